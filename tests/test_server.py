"""The OpenAI-compatible server with the real `openai` client, against a
server this test starts on 127.0.0.1 (bundled SmolLM2): chat, streaming,
completions with logprobs, JSON schema, bad requests, a wrong key, 8
concurrent streams, a disconnect that frees the slot, the queue bound; and an
image that fails to decode (in-process, tiny LLaVA-OneVision)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("sse_starlette")

import jsonschema  # noqa: E402

import bluelm_cpp  # noqa: E402

KEY = "test-key"
MAX_QUEUE = 8
Q = [{"role": "user", "content": "Which city is the capital of France?"}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def base_url(smollm2_file: Path) -> Any:
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "bluelm_cpp.server",
        "--model",
        str(smollm2_file),
        "--port",
        str(port),
        "--api-key",
        KEY,
        "-t",
        "2",
        "-c",
        "1024",
        "--max-queue",
        str(MAX_QUEUE),
        "--max-body-mb",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                pytest.fail(f"the server exited: {proc.stdout.read() if proc.stdout else ''}")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def client(base_url: str) -> Any:
    return openai.OpenAI(base_url=base_url + "/v1", api_key=KEY, max_retries=0, timeout=300)


def _health(base_url: str) -> dict[str, Any]:
    return httpx.get(base_url + "/health", timeout=10).json()


def test_models_and_chat(client: Any, smollm2: bluelm_cpp.Model) -> None:
    assert [m.id for m in client.models.list().data] == ["SmolLM2-135M-Instruct.Q4_1.gguf"]
    out = client.chat.completions.create(model="x", messages=Q, temperature=0, max_tokens=24)
    want = smollm2.create_chat_completion(Q, temperature=0, max_tokens=24)
    assert out.choices[0].message.content == want["choices"][0]["message"]["content"]
    assert out.usage.prompt_tokens == want["usage"]["prompt_tokens"]
    pieces = client.chat.completions.create(
        model="x", messages=Q, temperature=0, max_tokens=24, stream=True
    )
    chunks = list(pieces)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == out.choices[0].message.content  # deltas join to the whole answer
    assert chunks[-1].choices[0].finish_reason == out.choices[0].finish_reason


def test_completion_logprobs(client: Any, smollm2: bluelm_cpp.Model) -> None:
    kw = dict(max_tokens=5, temperature=0, logprobs=2)
    out = client.completions.create(model="x", prompt="The capital of France is", **kw)
    want = smollm2.create_completion("The capital of France is", **kw)
    lp, wlp = out.choices[0].logprobs, want["choices"][0]["logprobs"]
    assert out.choices[0].text == want["choices"][0]["text"]
    assert lp.tokens == wlp["tokens"] and lp.token_logprobs == pytest.approx(wlp["token_logprobs"])
    assert all(len(t) >= 2 for t in lp.top_logprobs)


def test_json_schema(client: Any) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 30},
            "country": {"type": "string", "maxLength": 30},
        },
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    out = client.chat.completions.create(
        model="x",
        messages=Q,
        max_tokens=60,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}},
    )
    jsonschema.validate(json.loads(out.choices[0].message.content), schema)


def test_bad_requests_are_400_and_the_server_keeps_serving(client: Any, base_url: str) -> None:
    bad: list[dict[str, Any]] = [
        dict(max_tokens=-1),
        dict(extra_body={"no_such_field": 1}),
        dict(response_format={"type": "json_schema", "json_schema": {"schema": {"type": "nope"}}}),
        dict(messages=[{"role": "user", "content": "word " * 1500}]),  # longer than n_ctx 1024
        dict(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
                    ],
                }
            ]
        ),
    ]
    for kw in bad:
        args = {"model": "x", "messages": Q, "max_tokens": 4, **kw}
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(**args)
        assert e.value.body["message"]  # OpenAI's error shape, with a message
    r = httpx.post(
        base_url + "/v1/completions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = httpx.get(base_url + "/v1/nothing", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 404 and "error" in r.json()
    big = json.dumps({"prompt": "x" * (2 << 20)})
    r = httpx.post(
        base_url + "/v1/completions", content=big, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert r.status_code == 413
    out = client.chat.completions.create(model="x", messages=Q, max_tokens=2)
    assert out.choices[0].finish_reason in ("stop", "length")


def test_wrong_api_key(base_url: str) -> None:
    c = openai.OpenAI(base_url=base_url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        c.chat.completions.create(model="x", messages=Q, max_tokens=2)


def test_eight_concurrent_streams_finish(client: Any) -> None:
    results: list[Any] = [None] * 8

    def work(i: int) -> None:
        msgs = [{"role": "user", "content": f"Count to {i + 3}."}]
        chunks = list(
            client.chat.completions.create(
                model="x", messages=msgs, max_tokens=12, temperature=0, stream=True
            )
        )
        results[i] = chunks[-1].choices[0].finish_reason

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert all(r in ("stop", "length") for r in results), results


def test_disconnect_frees_the_slot_and_queue_bound(client: Any, base_url: str) -> None:
    before = _health(base_url)["cancelled"]
    stream = client.chat.completions.create(
        model="x", messages=Q, max_tokens=900, temperature=0.8, seed=1, stream=True
    )
    for _ in range(2):
        next(iter(stream))
    stream.close()  # the client goes away mid-stream
    t0 = time.perf_counter()
    while _health(base_url)["busy"] or _health(base_url)["cancelled"] == before:
        assert time.perf_counter() - t0 < 20, "the generation went on after the disconnect"
        time.sleep(0.05)
    assert client.chat.completions.create(model="x", messages=Q, max_tokens=2).choices
    # MAX_QUEUE + 2 requests at once: the queue holds MAX_QUEUE, the rest get a 503.
    codes: list[int] = []

    def post() -> None:
        body = {"messages": Q, "max_tokens": 40, "temperature": 0}
        r = httpx.post(
            base_url + "/v1/chat/completions",
            json=body,
            timeout=600,
            headers={"Authorization": f"Bearer {KEY}"},
        )
        codes.append(r.status_code)

    threads = [threading.Thread(target=post) for _ in range(MAX_QUEUE + 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert sorted(set(codes)) == [200, 503] and codes.count(200) >= MAX_QUEUE - 1, codes
    assert _health(base_url)["pending"] == 0


def test_image_that_fails_to_decode(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from bluelm_cpp.convert.vision import convert_vision_checkpoint
    from bluelm_cpp.server.app import create_app

    path = tmp_path / "llava.gguf"
    data = Path(__file__).parent / "data" / "tiny_llava_ov"
    convert_vision_checkpoint(data, path, outtype="f32", vision_outtype="f32", progress=False)
    with bluelm_cpp.Model(path, n_ctx=256, n_threads=1) as m, TestClient(create_app(m)) as tc:
        part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
        body = {"messages": [{"role": "user", "content": [part]}], "max_tokens": 2}
        r = tc.post("/v1/chat/completions", json=body)
        assert r.status_code == 400 and "decode" in r.json()["error"]["message"]
        import base64
        import io

        import numpy as np
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(buf, format="PNG")
        part["image_url"]["url"] = (
            "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        )
        r = tc.post("/v1/chat/completions", json={**body, "temperature": 0})
        assert r.status_code == 200 and r.json()["usage"]["prompt_tokens"] > 25
