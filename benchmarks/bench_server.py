"""bluelm-cpp's OpenAI-compatible server against llama-cpp-python's
(`python -m llama_cpp.server`, its `[server]` extra) on the same GGUF in the
same run: requests/s and time to first token at 1, 4 and 8 concurrent
clients, each client sending streamed chat requests back to back.

Both servers get the same threads, context and prompts; the same greedy
requests (`max_tokens` each, temperature 0); one server runs at a time.
TTFT is from sending the request to the first content delta, as the client
sees it (queueing included: both servers serve one sequence at a time;
llama-cpp-python's is told not to cut a running stream short when the next
request comes, its default). Content deltas per request show that every
request got its whole answer.

    cd /tmp && python /path/to/benchmarks/bench_server.py --threads 2 --requests 8
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

import httpx

PROMPTS = [
    "Which city is the capital of France?",
    "Write a haiku about the sea.",
    "Give me three tips for staying healthy.",
    "What is 2+2?",
    "Name three colours.",
    "What is the boiling point of water?",
    "Describe a cat in one sentence.",
    "What is the largest planet?",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(kind: str, model: str, threads: int, n_ctx: int) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    if kind == "bluelm-cpp":
        cmd = [
            sys.executable,
            "-m",
            "bluelm_cpp.server",
            "--model",
            model,
            "--port",
            str(port),
            "-t",
            str(threads),
            "-c",
            str(n_ctx),
            "--max-queue",
            "64",
        ]
    else:
        cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            model,
            "--port",
            str(port),
            "--n_threads",
            str(threads),
            "--n_threads_batch",
            str(threads),
            "--n_ctx",
            str(n_ctx),
            "--n_batch",
            "128",
            "--n_ubatch",
            "128",
        ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} server exited ({' '.join(cmd)})")
        try:
            if httpx.get(url + "/v1/models", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{kind} server did not start")


def one_request(url: str, prompt: str, max_tokens: int) -> tuple[float, float, int]:
    """(ttft, total seconds, content chunks) of one streamed chat request."""
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    t0 = time.perf_counter()
    ttft = None
    n = 0
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0].get("delta", {})
            if delta.get("content"):
                n += 1
                if ttft is None:
                    ttft = time.perf_counter() - t0
    return (ttft if ttft is not None else time.perf_counter() - t0), time.perf_counter() - t0, n


def load(url: str, clients: int, requests: int, max_tokens: int) -> dict[str, float]:
    """`clients` threads, each sending `requests` requests back to back."""
    ttfts: list[float] = []
    chunks: list[int] = []
    lock = threading.Lock()

    failed: list[str] = []

    def client(c: int) -> None:
        for i in range(requests):
            try:
                ttft, _, n = one_request(url, PROMPTS[(c + i) % len(PROMPTS)], max_tokens)
            except (httpx.HTTPError, ValueError, KeyError) as e:
                with lock:
                    failed.append(f"{type(e).__name__}: {e}")
                continue
            with lock:
                ttfts.append(ttft)
                chunks.append(n)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if failed:
        print(f"  {url}: {len(failed)} of {clients * requests} requests failed, e.g. {failed[0]}")
    if not ttfts:
        raise RuntimeError(f"every request to {url} failed")
    return {
        "failed": len(failed),
        "rps": len(ttfts) / wall,
        "chunks_per_s": sum(chunks) / wall,
        "chunks_per_request": sum(chunks) / len(chunks),
        "ttft_median": statistics.median(ttfts),
        "ttft_p90": sorted(ttfts)[min(len(ttfts) - 1, math.ceil(0.9 * len(ttfts)) - 1)],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="GGUF (default: the bundled SmolLM2 Q4_1)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--clients", default="1,4,8")
    ap.add_argument("--requests", type=int, default=4, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--json", default=None, help="write the figures here")
    a = ap.parse_args(argv)
    if a.model is None:
        from bluelm_cpp.default_model import default_model_path

        a.model = default_model_path()
    clients = [int(c) for c in a.clients.split(",")]
    print(
        f"model {a.model}; {a.threads} threads, n_ctx {a.n_ctx}, {a.requests} requests per "
        f"client of {a.max_tokens} tokens, greedy, streamed; load average {os.getloadavg()[0]:.1f}"
    )
    res: dict[str, dict[int, dict[str, float]]] = {}
    for kind in ("bluelm-cpp", "llama-cpp-python"):
        proc, url = start(kind, a.model, a.threads, a.n_ctx)
        try:
            one_request(url, PROMPTS[0], 4)  # warm-up
            res[kind] = {c: load(url, c, a.requests, a.max_tokens) for c in clients}
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print(
        f"{'clients':>7} {'server':>17} {'req/s':>7} {'deltas/s':>9} {'deltas/req':>10} "
        f"{'TTFT med s':>11} {'TTFT p90 s':>11}"
    )
    for c in clients:
        for kind in res:
            r = res[kind][c]
            print(
                f"{c:>7} {kind:>17} {r['rps']:7.2f} {r['chunks_per_s']:9.1f} "
                f"{r['chunks_per_request']:10.1f} {r['ttft_median']:11.3f} {r['ttft_p90']:11.3f}"
            )
        ours, peer = res["bluelm-cpp"][c], res["llama-cpp-python"][c]
        print(
            f"{c:>7} {'ours / peer':>17} {ours['rps'] / peer['rps']:6.2f}x "
            f"{ours['chunks_per_s'] / peer['chunks_per_s']:8.2f}x {'':>10} "
            f"{ours['ttft_median'] / peer['ttft_median']:10.2f}x (TTFT: lower is better)"
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
