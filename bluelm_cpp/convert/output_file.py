"""A converter's output, written all or nothing: a temporary file next to the
output, renamed over it at the end, removed on any error or Ctrl-C.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> with replacing_output(d / "out.gguf", force=False) as tmp:
    ...     _ = tmp.write_bytes(b"GGUF")
    >>> sorted(p.name for p in d.iterdir())
    ['out.gguf']
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ModelFileError


def _create_empty(path: Path) -> None:
    # O_EXCL: never truncate a file that is not ours; 0o666 less the umask, as
    # for any new file.
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


@contextmanager
def replacing_output(out: Path, force: bool) -> Iterator[Path]:
    """Yield a new empty temporary file beside ``out``; on a clean exit rename it
    to ``out`` (refusing to replace a file that appeared meanwhile unless
    ``force``), on any exception delete it. OSErrors become ModelFileError."""
    # The name is chosen before the file exists, so an interrupt at any moment
    # after this line still finds the file to remove (mkstemp's name arrives
    # only once the file is there).
    tmp = out.parent / f".{out.name}.{secrets.token_hex(8)}.tmp"
    try:
        try:
            _create_empty(tmp)
        except OSError as e:
            raise ModelFileError(f"{out}: cannot create a file in {out.parent}: {e}") from e
        try:
            yield tmp
        except ModelFileError:
            raise
        except OSError as e:
            raise ModelFileError(f"{out}: writing failed: {e}") from e
        if out.exists() and not force:  # appeared while we were writing
            raise ModelFileError(f"{out}: output file exists (use --force to replace it)")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
