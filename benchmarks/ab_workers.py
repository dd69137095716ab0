"""Two builds' long-lived workers taking turns: the plumbing of ab_llm.py and ab_vision.py.

Each build runs WORKER (a ``python -c`` program that loads its model, prints ``ready``, then
answers each ``go`` line on stdin with one line on stdout) in its own Python, loaded once; per
pair both answer once, the order alternated pair by pair, since the VM changes speed within
seconds and only the ratio within a pair means much.

Example:
    with PairedWorkers(WORKER, [path, "2"], "old/bin/python", "new/bin/python") as w:
        for i, line in w.pairs(10):
            print(i, line["old"], line["new"])
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from types import TracebackType

NAMES = ("old", "new")


class PairedWorkers:
    """The old and new builds' workers, started and ready on construction."""

    def __init__(self, worker: str, args: list[str], old_python: str, new_python: str) -> None:
        self.procs = {
            name: subprocess.Popen(
                [py, "-c", worker, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            for name, py in zip(NAMES, (old_python, new_python))
        }
        for name, p in self.procs.items():
            assert p.stdout is not None and p.stdout.readline().strip() == "ready", name

    def pairs(self, n: int) -> Iterator[tuple[int, dict[str, str]]]:
        """n pairs of turns; yields the pair's index and each build's answer line."""
        for i in range(n):
            line: dict[str, str] = {}
            for name in NAMES if i % 2 == 0 else NAMES[::-1]:
                p = self.procs[name]
                assert p.stdin is not None and p.stdout is not None
                p.stdin.write("go\n")
                p.stdin.flush()
                line[name] = p.stdout.readline()
            yield i, line

    def __enter__(self) -> PairedWorkers:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for p in self.procs.values():
            assert p.stdin is not None
            p.stdin.close()
            p.wait()
