"""The ``bluelm-cpp`` command line: run, chat, info, convert.

Example:
    $ bluelm-cpp run "Which city is the capital of France?"    # greedy unless the file says
    $ bluelm-cpp run --raw "Once upon a time" --max-tokens 64 --temperature 0.7 --seed 1
    $ bluelm-cpp chat
    $ bluelm-cpp info model.gguf --tensors
    $ bluelm-cpp convert MODEL_DIR -o model.gguf --outtype q4_0
    $ bluelm-cpp serve --model model.gguf --port 8000
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from .errors import BlueLMError
from .sampling import SamplingParams


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", help="GGUF file (default: the bundled SmolLM2-135M-Instruct)")
    p.add_argument("-c", "--n-ctx", type=int, default=2048, help="context window (tokens)")
    p.add_argument("-t", "--threads", type=int, default=None, help="threads (default: cores)")
    p.add_argument("-b", "--n-batch", type=int, default=128, help="prefill chunk (tokens)")
    add_draft_args(p)


def add_draft_args(p: argparse.ArgumentParser) -> None:
    """``--draft`` and ``--n-draft`` (Model's ``draft`` and ``n_draft``)."""
    p.add_argument(
        "--draft",
        default=None,
        help="speculative decoding: 'prompt_lookup' or a draft model GGUF sharing the vocabulary",
    )
    p.add_argument("--n-draft", type=int, default=8, help="most tokens drafted per round")


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    """One option per SamplingParams field (csrc/llm/sampler.h), default None:
    unset ones come from the model file (general.sampling.*) or the library."""
    p.add_argument("-n", "--max-tokens", type=int, default=256)
    for name, default, help_text in SamplingParams.fields():
        if name == "logit_bias":
            continue
        kind = int if name == "seed" or isinstance(default, int) else float
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=help_text)
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")


def _sampling(ns: argparse.Namespace, model: Any, greedy: bool) -> SamplingParams:
    """The model file's sampling defaults, then the options given. ``greedy``:
    a file without ``general.sampling.temp`` answers greedily (deterministic)."""
    base = model.sampling_defaults
    if greedy and "general.sampling.temp" not in model.metadata:
        base = base.replace(temperature=0.0)
    given = {
        name: getattr(ns, name)
        for name, _default, _help in SamplingParams.fields()
        if getattr(ns, name, None) is not None
    }
    return base.replace(**given)


def _load(ns: argparse.Namespace):  # noqa: ANN202 - returns bluelm_cpp.Model
    from .model import Model

    return Model(
        ns.model,
        n_ctx=ns.n_ctx,
        n_threads=ns.threads,
        n_batch=ns.n_batch,
        draft=ns.draft,
        n_draft=ns.n_draft,
    )


def _cmd_run(ns: argparse.Namespace) -> int:
    model = _load(ns)
    if ns.raw:
        pieces = model.generate(
            ns.prompt, ns.max_tokens, stream=True, stop=ns.stop, sampling=_sampling(ns, model, True)
        )
    else:
        messages = [{"role": "user", "content": ns.prompt}]
        if ns.system:
            messages.insert(0, {"role": "system", "content": ns.system})
        pieces = model.chat(
            messages, ns.max_tokens, stream=True, stop=ns.stop, sampling=_sampling(ns, model, True)
        )
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def _cmd_chat(ns: argparse.Namespace) -> int:
    model = _load(ns)
    messages: list[dict[str, Any]] = []
    if ns.system:
        messages.append({"role": "system", "content": ns.system})
    print("Chat with the model; an empty line or Ctrl-D ends.", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        messages.append({"role": "user", "content": line})
        answer = []
        sampling = _sampling(ns, model, False)
        for piece in model.chat(
            messages, ns.max_tokens, stream=True, stop=ns.stop, sampling=sampling
        ):
            answer.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        messages.append({"role": "assistant", "content": "".join(answer)})
    return 0


def _tensor_role(name: str, n_dims: int, tied: bool) -> str:
    """How the runtime uses a tensor: a matrix product, a row lookup, or a vector."""
    if n_dims < 2:
        return "vector"
    if name.startswith(("v.", "mm.")):
        return "vision"
    if name == "token_embd.weight":
        return "lookup+matmul" if tied else "lookup"
    return "matmul"


def kernel_report(tensors: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Per type and per tensor: which kernel of this machine multiplies it.

    Example:
        >>> from bluelm_cpp import _core
        >>> types, rows = kernel_report(_core.GGUFFile("model.gguf").tensors)  # doctest: +SKIP
        >>> types["Q4_K"]                                                       # doctest: +SKIP
        {'tensors': 16, 'isa': 'avx512', 'kernel': 'simd', 'repacked': 16}
    """
    import os

    from . import _core

    repack = os.environ.get("BLUELM_REPACK") != "0"
    tied = not any(t["name"] == "output.weight" for t in tensors)
    types: dict[str, Any] = {}
    per_tensor = []
    for t in tensors:
        role = _tensor_role(t["name"], len(t["shape"]), tied)
        entry = types.setdefault(t["type_name"], {"tensors": 0})
        entry["tensors"] += 1
        row: dict[str, Any] = {
            "name": t["name"],
            "type": t["type_name"],
            "shape": t["shape"],
            "role": role,
        }
        if "matmul" in role:
            k = _core.kernel_info(t["type"], t["shape"][1])
            packed = repack and k["pack_rows"] > 0
            layout = k["layout"] if repack else "file"
            row.update(isa=k["isa"], kernel=k["kernel"], repacked=packed, layout=layout)
            entry.update(isa=k["isa"], kernel=k["kernel"])
            if packed:  # the packed kernel's name ("q5_0_x16 (16 rows in lanes)")
                entry["layout"] = layout
            entry["repacked"] = entry.get("repacked", 0) + int(packed)
        per_tensor.append(row)
    return types, per_tensor


def _cmd_info(ns: argparse.Namespace) -> int:
    from . import _core
    from .default_model import default_model_path

    f = _core.GGUFFile(ns.file or default_model_path())
    meta = f.metadata
    shown = {
        k: (f"<{len(v)} items>" if isinstance(v, list) and len(v) > 8 else v)
        for k, v in meta.items()
        if ns.all or k != "tokenizer.chat_template"
    }
    types, per_tensor = kernel_report(f.tensors)
    report: dict[str, Any] = {
        "path": f.path,
        "gguf_version": f.version,
        "file_size": f.file_size,
        "tensors": len(f.tensors),
        "tensor_types": {name: v["tensors"] for name, v in types.items()},
        "kernel_isa": _core.isa(),
        # per type: the kernel of this machine's table (simd, scalar fallback:
        # the table has no kernel of its own for the type), tensors repacked at load
        # and the kernel of that layout
        "kernels": {
            name: {k: v for k, v in e.items() if k != "tensors"}
            for name, e in types.items()
            if "kernel" in e
        },
        "metadata": shown,
    }
    if ns.tensors:
        report["tensor_list"] = per_tensor
    print(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    return 0


def _cmd_convert(argv: Sequence[str]) -> int:
    from .convert.cli import main as convert_main

    return int(convert_main(list(argv), prog="bluelm-cpp convert") or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bluelm-cpp", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="answer one prompt (chat template applied unless --raw)")
    run.add_argument("prompt")
    run.add_argument("--raw", action="store_true", help="continue the text as is, no template")
    run.add_argument("--system", default=None, help="system message")
    _add_model_args(run)
    _add_sampling_args(run)
    run.set_defaults(func=_cmd_run)

    chat = sub.add_parser("chat", help="interactive chat on the terminal")
    chat.add_argument("--system", default=None)
    _add_model_args(chat)
    _add_sampling_args(chat)
    chat.set_defaults(func=_cmd_chat)

    info = sub.add_parser(
        "info", help="print a GGUF file's metadata, tensor types and the kernel of each type"
    )
    info.add_argument("file", nargs="?", default=None)
    info.add_argument("--all", action="store_true", help="include the chat template")
    info.add_argument(
        "--tensors", action="store_true", help="also list every tensor: type, shape, role, kernel"
    )
    info.set_defaults(func=_cmd_info)

    sub.add_parser(
        "convert", help="Hugging Face checkpoint -> GGUF (see convert --help)", add_help=False
    )
    sub.add_parser("serve", help="OpenAI-compatible server (see serve --help)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bluelm-cpp`` command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "convert":
        return _cmd_convert(args[1:])
    if args and args[0] == "serve":
        from .server import main as serve_main

        return serve_main(args[1:], prog="bluelm-cpp serve")
    ns = build_parser().parse_args(args)
    try:
        return int(ns.func(ns))
    except BlueLMError as e:
        print(f"bluelm-cpp: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
