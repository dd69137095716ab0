"""Regenerates the GGUF fuzz seed corpus in tests/fuzz/gguf/seeds/.

Seeds come from two sources: the real SmolLM2-135M-Instruct GGUF header (its
first 4 KiB verbatim, and its whole metadata + tensor-info section rewritten by
gguf-py with the vocabulary arrays cut to 64 entries so the seed stays small),
and small files written by gguf-py (every metadata value type; complete tiny
llama and qwen2 models whose weights bind, so the fuzzer reaches the config
and weight checks; a tiny model mixing the K-quant, Q5 and IQ4 types, and
three broken copies of it: a non-finite block scale, a row width that is not a
multiple of 256, a shape that needs more blocks than the tensor's data holds).
Needs ``gguf`` and ``numpy``; the SmolLM2 seeds and the K-quant seeds (encoded
by the runtime's quantiser) also need ``bluelm_cpp`` installed.

    python tests/fuzz/gguf/make_seeds.py
"""

from __future__ import annotations

import os
import struct
import sys
import tempfile
from pathlib import Path

import gguf
import numpy as np

SEEDS = Path(__file__).resolve().parent / "seeds"
VOCAB_KEEP = 64
T = gguf.GGUFValueType


def _write(name: str, writer_fill, arch: str = "llama") -> None:
    fd, tmp = tempfile.mkstemp(dir=SEEDS, suffix=".tmp")
    os.close(fd)
    w = gguf.GGUFWriter(tmp, arch)
    tensors_only_info = writer_fill(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    if tensors_only_info:
        w.write_ti_data_to_file()
    else:
        w.write_tensors_to_file()
    w.close()
    os.replace(tmp, SEEDS / name)


def smollm2_seeds() -> None:
    try:
        from bluelm_cpp.default_model import default_model_path

        path = default_model_path()
    except Exception as e:  # noqa: BLE001 - any reason means "not available"
        print(f"skip SmolLM2 seeds: {e}")
        return
    with open(path, "rb") as f:
        head = f.read(4096)
    (SEEDS / "smollm2_first_4k.bin").write_bytes(head)

    r = gguf.GGUFReader(path)

    def fill(w: gguf.GGUFWriter) -> bool:
        for key, field in r.fields.items():
            if key.startswith("GGUF.") or key == "general.architecture":
                continue
            main = field.types[0]
            value = field.contents()
            sub = None
            if main == T.ARRAY:
                sub = field.types[1]
                value = value[:VOCAB_KEEP]
            w.add_key_value(key, value, main, sub_type=sub)
        for t in r.tensors:
            shape = [int(x) for x in reversed(t.shape.tolist())]
            w.add_tensor_info(
                t.name, shape, np.dtype(np.float32), int(t.n_bytes), raw_dtype=t.tensor_type
            )
        return True

    _write("smollm2_header_vocab64.gguf", fill)


def all_value_types(w: gguf.GGUFWriter) -> bool:
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -7)
    w.add_uint16("t.u16", 65000)
    w.add_int16("t.i16", -300)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -5)
    w.add_float32("t.f32", 1.5)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo")
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -(2**40))
    w.add_float64("t.f64", -2.25)
    w.add_array("t.arr_i32", [1, -2, 3])
    w.add_array("t.arr_f32", [0.5, 1.5])
    w.add_array("t.arr_str", ["a", "", "ccc"])
    w.add_array("t.arr_bool", [True, False])
    w.add_key_value("t.arr_u8", [1, 2, 255], T.ARRAY, sub_type=T.UINT8)
    w.add_key_value("t.arr_u64", [1, 2**64 - 1], T.ARRAY, sub_type=T.UINT64)
    w.add_key_value("t.arr_f64", [1e300], T.ARRAY, sub_type=T.FLOAT64)
    w.add_uint32("general.alignment", 64)
    w.add_tensor("a", np.arange(64, dtype=np.float32))
    w.add_tensor("b", np.ones((2, 32), dtype=np.float16))
    return False


def tiny_model(arch: str, qtype: gguf.GGMLQuantizationType | None):
    """A complete 2-layer model with random weights that the runtime can load."""
    n_embd, n_ff, n_head, n_head_kv, n_vocab, n_layer = 32, 64, 4, 2, 48, 2
    head_dim = n_embd // n_head
    rng = np.random.default_rng(0)

    def fill(w: gguf.GGUFWriter) -> bool:
        w.add_block_count(n_layer)
        w.add_embedding_length(n_embd)
        w.add_feed_forward_length(n_ff)
        w.add_head_count(n_head)
        w.add_head_count_kv(n_head_kv)
        w.add_context_length(64)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_rope_freq_base(10000.0)
        w.add_tokenizer_model("gpt2")
        w.add_token_list([f"t{i}" for i in range(n_vocab)])

        def mat(name: str, rows: int, cols: int) -> None:
            a = rng.standard_normal((rows, cols)).astype(np.float32)
            if qtype is None:
                w.add_tensor(name, a.astype(np.float16))
            else:
                q = gguf.quants.quantize(a, qtype)
                w.add_tensor(name, q, raw_dtype=qtype)

        def vec(name: str, n: int) -> None:
            w.add_tensor(name, rng.standard_normal(n).astype(np.float32))

        mat("token_embd.weight", n_vocab, n_embd)
        vec("output_norm.weight", n_embd)
        for i in range(n_layer):
            p = f"blk.{i}."
            vec(p + "attn_norm.weight", n_embd)
            vec(p + "ffn_norm.weight", n_embd)
            mat(p + "attn_q.weight", n_head * head_dim, n_embd)
            mat(p + "attn_k.weight", n_head_kv * head_dim, n_embd)
            mat(p + "attn_v.weight", n_head_kv * head_dim, n_embd)
            mat(p + "attn_output.weight", n_embd, n_head * head_dim)
            mat(p + "ffn_gate.weight", n_ff, n_embd)
            mat(p + "ffn_up.weight", n_ff, n_embd)
            mat(p + "ffn_down.weight", n_embd, n_ff)
            if arch == "qwen2":
                vec(p + "attn_q.bias", n_head * head_dim)
                vec(p + "attn_k.bias", n_head_kv * head_dim)
                vec(p + "attn_v.bias", n_head_kv * head_dim)
        return False

    return fill


K = gguf.GGMLQuantizationType
# tensor -> type of the K-quant seed: K-quant rows where the row width is 256
KQUANT_TYPES = {
    "token_embd.weight": K.Q4_K, "output.weight": K.Q6_K, "blk.0.attn_q.weight": K.Q5_K,
    "blk.0.attn_k.weight": K.Q2_K, "blk.0.attn_v.weight": K.Q3_K,
    "blk.0.attn_output.weight": K.Q5_0, "blk.0.ffn_gate.weight": K.IQ4_XS,
    "blk.0.ffn_up.weight": K.Q4_K, "blk.0.ffn_down.weight": K.IQ4_NL,
}  # fmt: skip


def tiny_kquant_model(w: gguf.GGUFWriter) -> bool:
    """n_embd 256 (one super-block per row), 4 heads of 8, n_ff 32: about 30 KB."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from kquant_files import encode

    n_embd, n_ff, n_vocab = 256, 32, 16
    rng = np.random.default_rng(3)
    w.add_block_count(1)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_key_length(8)
    w.add_value_length(8)
    w.add_context_length(64)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(n_vocab)])
    shapes = {
        "token_embd.weight": (n_vocab, n_embd), "output.weight": (n_vocab, n_embd),
        "blk.0.attn_q.weight": (32, n_embd), "blk.0.attn_k.weight": (16, n_embd),
        "blk.0.attn_v.weight": (16, n_embd), "blk.0.attn_output.weight": (n_embd, 32),
        "blk.0.ffn_gate.weight": (n_ff, n_embd), "blk.0.ffn_up.weight": (n_ff, n_embd),
        "blk.0.ffn_down.weight": (n_embd, n_ff),
    }  # fmt: skip
    for name in ("output_norm.weight", "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"):
        w.add_tensor(name, rng.standard_normal(n_embd).astype(np.float32))
    for name, shape in shapes.items():
        data, raw = encode(rng.standard_normal(shape).astype(np.float32) / 16, KQUANT_TYPES[name])
        w.add_tensor(name, data, raw_dtype=raw)
    return False


def broken_kquant_seeds() -> None:
    """Copies of the K-quant seed with one fault each (the loader must refuse them)."""
    good = (SEEDS / "tiny_llama_kquants.gguf").read_bytes()
    r = gguf.GGUFReader(SEEDS / "tiny_llama_kquants.gguf")
    up = next(t for t in r.tensors if t.name == "blk.0.ffn_up.weight")
    nan = bytearray(good)
    struct.pack_into("<H", nan, int(up.data_offset), 0x7E00)  # Q4_K d of block 0: NaN
    (SEEDS / "kquant_nan_scale.gguf").write_bytes(bytes(nan))

    def patched_dims(name: str, dims: tuple[int, int]) -> bytes:
        data = bytearray(good)
        enc = name.encode()
        pos = data.index(struct.pack("<Q", len(enc)) + enc) + 8 + len(enc) + 4
        struct.pack_into("<2Q", data, pos, *dims)
        return bytes(data)

    (SEEDS / "kquant_row_width.gguf").write_bytes(patched_dims("blk.0.attn_q.weight", (128, 64)))
    (SEEDS / "kquant_block_count.gguf").write_bytes(patched_dims("token_embd.weight", (256, 17)))


def main() -> None:
    SEEDS.mkdir(exist_ok=True)
    smollm2_seeds()
    _write("all_value_types.gguf", all_value_types)
    _write("tiny_llama_f16.gguf", tiny_model("llama", None))
    _write("tiny_llama_q4_1.gguf", tiny_model("llama", gguf.GGMLQuantizationType.Q4_1))
    _write("tiny_qwen2_q8_0.gguf", tiny_model("qwen2", gguf.GGMLQuantizationType.Q8_0), "qwen2")
    _write("empty_v3.gguf", lambda w: False)
    _write("tiny_llama_kquants.gguf", tiny_kquant_model)
    broken_kquant_seeds()
    for p in sorted(SEEDS.iterdir()):
        print(f"{p.name}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
