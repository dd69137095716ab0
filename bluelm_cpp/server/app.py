"""The OpenAI-compatible HTTP server (FastAPI + uvicorn + sse-starlette).

One model serves the requests one at a time, first come first served: each
request runs whole on one worker thread (no batching of sequences), streams
hand their chunks to the event loop through a queue. At most ``max_queue``
requests wait or run; more get a 503. A client that disconnects from a stream
cancels its generation at once (the worker closes the generator, or
``Model.cancel()`` stops its prefill); one request's failure is answered with
its own error and never reaches another.

Example:
    >>> from bluelm_cpp.server.app import create_app
    >>> app = create_app(bluelm_cpp.Model(), api_key="secret")  # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sse_starlette.sse import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import BlueLMError, CancelledError, ContextOverflowError
from .schemas import ChatRequest, CompletionRequest

_END = object()


def error_response(status: int, message: str, kind: str, code: str | None = None) -> JSONResponse:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status)


def _error_of(e: BaseException) -> tuple[int, str, str, str | None]:
    if isinstance(e, ContextOverflowError):
        return 400, str(e), "invalid_request_error", "context_length_exceeded"
    if isinstance(e, CancelledError):
        return 499, str(e), "invalid_request_error", "cancelled"
    if isinstance(e, BlueLMError):
        return 400, str(e), "invalid_request_error", None
    return 500, f"internal error: {type(e).__name__}: {e}", "server_error", None


class BadBody(Exception):
    """The request body is not JSON."""


class Busy(Exception):
    """The queue bound is reached."""


class _Job:
    def __init__(self) -> None:
        self.cancelled = threading.Event()


class Worker:
    """Runs the model's requests one at a time, in arrival order, on one thread."""

    def __init__(self, model: Any, max_queue: int) -> None:
        self.model = model
        self.max_queue = max_queue
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bluelm-model")
        self._lock = threading.Lock()
        self._pending = 0
        self._current: _Job | None = None
        self.n_cancelled = 0

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "busy": self._current is not None,
                "pending": self._pending,
                "cancelled": self.n_cancelled,
            }

    def admit(self) -> None:
        with self._lock:
            if self._pending >= self.max_queue:
                raise Busy(f"the server is busy: {self._pending} requests are queued; retry later")
            self._pending += 1

    def _leave(self) -> None:
        with self._lock:
            self._pending -= 1

    def _run(self, job: _Job, fn: Callable[[], Any]) -> Any:
        with self._lock:
            self._current = job
        try:
            if job.cancelled.is_set():
                raise CancelledError("the client went away before the request started")
            return fn()
        finally:
            with self._lock:
                self._current = None

    def cancel(self, job: _Job) -> None:
        """The client of ``job`` went away: stop it now if it runs."""
        job.cancelled.set()
        with self._lock:
            self.n_cancelled += 1
            if self._current is job:
                self.model.cancel()  # a prefill stops; a generation stops at its next token

    async def call(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on the model's thread (a whole non-streamed request)."""
        job = _Job()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, job, fn)
        finally:
            self._leave()

    async def stream(self, make: Callable[[], Iterator[Any]]) -> AsyncIterator[Any]:
        """The items of ``make()``, produced on the model's thread; an
        exception there is yielded as the item."""
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[Any] = asyncio.Queue()
        job = _Job()

        def produce() -> None:
            it = make()
            try:
                for item in it:
                    if job.cancelled.is_set():
                        return
                    loop.call_soon_threadsafe(q.put_nowait, item)
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()

        def body() -> None:
            try:
                self._run(job, produce)
            except BaseException as e:  # noqa: BLE001 - handed to the client's task
                loop.call_soon_threadsafe(q.put_nowait, e)
            finally:
                loop.call_soon_threadsafe(q.put_nowait, _END)

        loop.run_in_executor(self._pool, body)
        finished = False
        try:
            while True:
                item = await q.get()
                if item is _END:
                    finished = True
                    return
                yield item
        finally:
            if not finished:
                self.cancel(job)
            self._leave()


def create_app(
    model: Any,
    *,
    model_name: str | None = None,
    api_key: str | None = None,
    max_queue: int = 16,
    max_body_bytes: int = 32 << 20,
) -> FastAPI:
    """The FastAPI app serving ``model``: ``GET /v1/models``, ``POST
    /v1/completions``, ``POST /v1/chat/completions``, ``GET /health``."""
    app = FastAPI(title="bluelm-cpp", version="1")
    worker = Worker(model, max_queue)
    name = model_name or os.path.basename(model.path)
    created = int(time.time())
    app.state.worker = worker

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[..., Any]) -> Any:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > max_body_bytes:
            return error_response(
                413,
                f"the request body is {size} bytes; at most {max_body_bytes} are accepted",
                "invalid_request_error",
                "request_too_large",
            )
        if api_key is not None and request.url.path != "/health":
            if request.headers.get("authorization", "") != f"Bearer {api_key}":
                return error_response(
                    401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key"
                )
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return error_response(400, "; ".join(parts) or "bad request", "invalid_request_error")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), "invalid_request_error")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", **worker.status()}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {"id": name, "object": "model", "created": created, "owned_by": "bluelm-cpp"}
        return {"object": "list", "data": [card]}

    async def parse(request: Request, schema: Any) -> Any:
        """The JSON body as ``schema`` (whatever the Content-Type says)."""
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadBody(f"the body is not valid JSON: {e}") from None
        try:
            return schema.model_validate(body)
        except ValidationError as e:
            raise RequestValidationError(e.errors()) from None

    @app.exception_handler(BadBody)
    async def bad_body(_: Request, exc: BadBody) -> JSONResponse:
        return error_response(400, str(exc), "invalid_request_error")

    async def answer(make: Callable[[], Any], stream: bool) -> Any:
        try:
            worker.admit()
        except Busy as e:
            return error_response(503, str(e), "server_error", "server_busy")
        if not stream:
            try:
                return await worker.call(make)
            except Exception as e:  # noqa: BLE001 - one request's failure is its own answer
                return error_response(*_error_of(e))
        items = worker.stream(make)
        first = await items.__anext__()  # errors before the first chunk get a status code
        if isinstance(first, BaseException):
            await items.aclose()
            return error_response(*_error_of(first))

        async def events() -> AsyncIterator[str]:
            try:
                yield json.dumps(first)
                async for item in items:
                    if isinstance(item, BaseException):
                        status, msg, kind, code = _error_of(item)
                        yield json.dumps({"error": {"message": msg, "type": kind, "code": code}})
                        return
                    yield json.dumps(item)
                yield "[DONE]"
            finally:
                await items.aclose()  # a disconnect lands here: the generation stops

        return EventSourceResponse(events(), ping=15)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        req = await parse(request, CompletionRequest)
        if req.suffix is not None:
            return error_response(400, "suffix is not supported", "invalid_request_error")
        kw = {**req.arguments(), "model_name": name}
        return await answer(lambda: model.create_completion(req.prompt, **kw), req.stream)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        req = await parse(request, ChatRequest)
        kw = {**req.arguments(), "model_name": name}
        return await answer(lambda: model.create_chat_completion(req.messages, **kw), req.stream)

    return app


__all__ = ["Worker", "create_app", "error_response"]
