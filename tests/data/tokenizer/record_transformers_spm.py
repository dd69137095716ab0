"""Record transformers' ids for the SentencePiece test tokenizer.

    python tests/data/tokenizer/record_transformers_spm.py

Needs transformers, sentencepiece and protobuf (transformers converts
``tokenizer.model`` into its fast tokenizer through them). Writes
``spm_bpe_transformers.json`` next to this script: for every string of
``strings.json``, the ids of ``LlamaTokenizer.from_pretrained`` (legacy=True,
the setting of Llama-family SentencePiece checkpoints) without special tokens.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    import transformers
    from transformers import LlamaTokenizer

    warnings.filterwarnings("ignore")
    strings = json.loads((HERE / "strings.json").read_text())["strings"]
    with tempfile.TemporaryDirectory() as d:
        shutil.copyfile(HERE / "spm_bpe.model", Path(d) / "tokenizer.model")
        tok = LlamaTokenizer.from_pretrained(d, legacy=True)
        cases = [{"text": s, "ids": tok.encode(s, add_special_tokens=False)} for s in strings]
    out = {"transformers": transformers.__version__, "legacy": True, "cases": cases}
    (HERE / "spm_bpe_transformers.json").write_text(json.dumps(out, ensure_ascii=False, indent=0))
    print(f"wrote {len(cases)} cases with transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
