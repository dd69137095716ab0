"""One request at a time on a model: the gate every generation passes, and
the cancel that reaches only the request in flight.

Example:
    >>> gate = RequestGate(None)
    >>> with gate.session():
    ...     pass
"""

from __future__ import annotations

import threading
from typing import Any

from .errors import BlueLMError


class RequestGate:
    """One request at a time on a model; refuses re-entry from the same
    thread (an open stream that was not finished or closed). A request starts
    with no cancel pending; ``cancel`` reaches only the request in flight."""

    def __init__(self, ctx: Any) -> None:
        self.lock = threading.Lock()
        self.owner: int | None = None
        self.ctx = ctx
        self._state = threading.Lock()

    def session(self) -> RequestSession:
        return RequestSession(self)

    def cancel(self) -> None:
        with self._state:
            if self.owner is not None and self.ctx is not None:
                self.ctx.cancel()


class RequestSession:
    """A request's hold on a :class:`RequestGate`."""

    def __init__(self, gate: RequestGate) -> None:
        self._g = gate

    def __enter__(self) -> None:
        me = threading.get_ident()
        if self._g.owner == me:
            raise BlueLMError(
                "this model is busy with an unfinished generation in the same thread; "
                "exhaust or close() the previous stream first"
            )
        self._g.lock.acquire()
        with self._g._state:
            self._g.owner = me
            if self._g.ctx is not None:
                self._g.ctx.clear_cancel()

    def __exit__(self, *exc: object) -> None:
        with self._g._state:
            self._g.owner = None
        self._g.lock.release()
