"""Test applications and a real uvicorn server for the ``asignals.asgi`` tests.

* :class:`Probe` is what an application under test reports to: the events its endpoints,
  background tasks, dependencies and lifespan record, and the exceptions it raised.
* :func:`make_starlette_app` and :func:`make_fastapi_app` build the same routes with each
  framework (FastAPI adds a dependency with ``yield``).
* :class:`Recorder` and :func:`recording` connect thread-safe receivers to signals, for tests
  whose server runs in another thread.
* :func:`serving` runs an ASGI application under uvicorn on 127.0.0.1, port 0, in a
  background thread; :func:`failed_startup` runs one whose startup is expected to fail.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

import anyio
import uvicorn
from fastapi import BackgroundTasks, Depends, FastAPI
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from asignals import AsyncSignal
from asignals.asgi import ASGIApp
from asignals.testing import connected_to

T = TypeVar("T")

Framework = Literal["starlette", "fastapi"]
FRAMEWORKS: tuple[Framework, ...] = ("starlette", "fastapi")
LoopName = Literal["asyncio", "uvloop"]
LOOPS: tuple[LoopName, ...] = ("asyncio", "uvloop")

WAIT = 10.0
"""Upper bound, in seconds, on every wait for something another thread does."""

STREAM_CHUNKS = 5
SLOW_STREAM_CHUNKS = 200  # at 0.02 s each: at most 4 s, long after the client has gone

request_tag: ContextVar[str] = ContextVar("request_tag", default="unset")
"""Set by request_started receivers in the tests, read by the /ctx endpoints."""


class AppError(Exception):
    """What the /error endpoint raises."""


# -- what the application reports --------------------------------------------------------


class Probe:
    """Events recorded by an application under test (from the server's thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[str] = []
        self.raised: list[BaseException] = []
        self.fail_startup = False
        self.arrived = 0
        self.chunks_sent = 0
        self._partner: anyio.Event | None = None

    def record(self, event: str) -> None:
        with self._lock:
            self.events.append(event)

    def reset(self) -> None:
        with self._lock:
            self.events.clear()
            self.raised.clear()
            self.fail_startup = False
            self.arrived = 0
            self.chunks_sent = 0
            self._partner = None

    def error(self) -> AppError:
        exc = AppError("boom")
        with self._lock:
            self.raised.append(exc)
        return exc

    async def wait_for_partner(self) -> None:
        """Hold a request until a second one has arrived too (at most WAIT seconds)."""
        # Both requests run on the server's event loop: no lock needed.
        if self._partner is None:
            self._partner = anyio.Event()
        self.arrived += 1
        if self.arrived >= 2:
            self._partner.set()
        with anyio.move_on_after(WAIT):
            await self._partner.wait()

    async def stream(self, chunks: int, delay: float) -> AsyncIterator[bytes]:
        for index in range(chunks):
            await anyio.sleep(delay)
            self.chunks_sent += 1
            yield b"chunk %d\n" % index


def lifespan_for(probe: Probe) -> Callable[[Any], Any]:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        probe.record("lifespan-startup")
        if probe.fail_startup:
            raise AppError("startup failed")
        yield
        probe.record("lifespan-shutdown")

    return lifespan


# -- Starlette ---------------------------------------------------------------------------


def websocket_endpoints(
    probe: Probe,
) -> tuple[Callable[[WebSocket], Awaitable[None]], Callable[[WebSocket], Awaitable[None]]]:
    """The two websocket endpoints both apps serve: /ws and /ws-echo."""

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(text)
        await websocket.close(code=4001)

    async def ws_until_disconnect(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except WebSocketDisconnect:
            probe.record("ws-disconnect")

    return ws, ws_until_disconnect


def make_starlette_app(probe: Probe) -> Starlette:
    """The test routes, as a Starlette application."""

    async def index(request: Request) -> Response:
        probe.record("endpoint")
        return PlainTextResponse("ok")

    async def status(request: Request) -> Response:
        return Response(status_code=request.path_params["code"])

    async def stream(request: Request) -> Response:
        return StreamingResponse(probe.stream(STREAM_CHUNKS, 0.001))

    async def slow_stream(request: Request) -> Response:
        return StreamingResponse(probe.stream(SLOW_STREAM_CHUNKS, 0.02))

    async def error(request: Request) -> Response:
        probe.record("endpoint")
        raise probe.error()

    async def background_job() -> None:
        await anyio.sleep(0.05)
        probe.record("background")

    async def background(request: Request) -> Response:
        probe.record("endpoint")
        return PlainTextResponse("ok", background=BackgroundTask(background_job))

    async def ctx(request: Request) -> Response:
        return PlainTextResponse(request_tag.get())

    def ctx_sync(request: Request) -> Response:  # runs in a worker thread
        return PlainTextResponse(request_tag.get())

    async def state(request: Request) -> Response:
        return PlainTextResponse(str(getattr(request.state, "ready", "missing")))

    async def pair(request: Request) -> Response:
        await probe.wait_for_partner()
        return Response(status_code=request.path_params["code"])

    async def plain(request: Request) -> Response:
        return PlainTextResponse("ok")

    ws, ws_until_disconnect = websocket_endpoints(probe)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/status/{code:int}", status),
            Route("/stream", stream),
            Route("/slow-stream", slow_stream),
            Route("/error", error),
            Route("/background", background),
            Route("/ctx", ctx),
            Route("/ctx-sync", ctx_sync),
            Route("/state", state),
            Route("/pair/{code:int}", pair),
            Route("/health", plain),
            Route("/metrics/{name}", plain),
            WebSocketRoute("/ws", ws),
            WebSocketRoute("/ws-echo", ws_until_disconnect),
        ],
        lifespan=lifespan_for(probe),
    )


# -- FastAPI -----------------------------------------------------------------------------


async def resource(request: Request) -> AsyncIterator[str]:
    """A FastAPI dependency with ``yield``: its teardown runs once the response is sent."""
    probe: Probe = request.app.state.probe
    probe.record("dependency-setup")
    try:
        yield "resource"
    finally:
        await anyio.sleep(0.01)
        probe.record("teardown")


# At module level: FastAPI resolves the (string) annotations in the module's namespace.
Resource = Annotated[str, Depends(resource)]


def make_fastapi_app(probe: Probe) -> FastAPI:
    """The same routes as :func:`make_starlette_app`, plus a dependency with ``yield``."""
    app = FastAPI(lifespan=lifespan_for(probe))
    app.state.probe = probe

    @app.get("/")
    async def index() -> Response:
        probe.record("endpoint")
        return PlainTextResponse("ok")

    @app.get("/status/{code}")
    async def status(code: int) -> Response:
        return Response(status_code=code)

    @app.get("/stream")
    async def stream() -> Response:
        return StreamingResponse(probe.stream(STREAM_CHUNKS, 0.001))

    @app.get("/slow-stream")
    async def slow_stream() -> Response:
        return StreamingResponse(probe.stream(SLOW_STREAM_CHUNKS, 0.02))

    @app.get("/error")
    async def error() -> Response:
        probe.record("endpoint")
        raise probe.error()

    async def background_job() -> None:
        await anyio.sleep(0.05)
        probe.record("background")

    @app.get("/background")
    async def background(tasks: BackgroundTasks, res: Resource) -> Response:
        probe.record("endpoint")
        tasks.add_task(background_job)
        return PlainTextResponse("ok")

    @app.get("/ctx")
    async def ctx() -> Response:
        return PlainTextResponse(request_tag.get())

    @app.get("/ctx-sync")
    def ctx_sync() -> Response:  # runs in a worker thread
        return PlainTextResponse(request_tag.get())

    @app.get("/state")
    async def state(request: Request) -> Response:
        return PlainTextResponse(str(getattr(request.state, "ready", "missing")))

    @app.get("/pair/{code}")
    async def pair(code: int) -> Response:
        await probe.wait_for_partner()
        return Response(status_code=code)

    @app.get("/health")
    async def health() -> Response:
        return PlainTextResponse("ok")

    @app.get("/metrics/{name}")
    async def metrics(name: str) -> Response:
        return PlainTextResponse("ok")

    ws, ws_until_disconnect = websocket_endpoints(probe)
    app.add_api_websocket_route("/ws", ws)
    app.add_api_websocket_route("/ws-echo", ws_until_disconnect)
    return app


def make_app(framework: Framework, probe: Probe) -> Starlette:
    """The test routes built with *framework* (FastAPI is a Starlette subclass)."""
    if framework == "starlette":
        return make_starlette_app(probe)
    return make_fastapi_app(probe)


# -- recording signals -------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One call of a :class:`Recorder` receiver."""

    signal: AsyncSignal
    sender: Any
    payload: dict[str, Any]


@dataclass
class Recorder:
    """Thread-safe receiver recording every call, with bounded waits for calls to arrive."""

    calls: list[Received] = field(default_factory=list)
    on_call: Callable[[Received], None] | None = None
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def receive(self, signal: AsyncSignal, sender: Any, **payload: Any) -> None:
        call = Received(signal, sender, payload)
        if self.on_call is not None:
            self.on_call(call)
        with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    def of(self, signal: AsyncSignal) -> list[Received]:
        with self._changed:
            return [call for call in self.calls if call.signal is signal]

    def wait_for(
        self, signal: AsyncSignal, count: int = 1, timeout: float = WAIT
    ) -> list[Received]:
        """Wait until *signal* was received *count* times; return those calls."""
        with self._changed:
            self._changed.wait_for(
                lambda: sum(call.signal is signal for call in self.calls) >= count, timeout
            )
        calls = self.of(signal)
        assert len(calls) >= count, f"{signal!r}: {len(calls)} call(s) after {timeout} s"
        return calls

    def names(self) -> list[str]:
        with self._changed:
            return [call.signal.label for call in self.calls]


@contextmanager
def recording(*signals: AsyncSignal, sender: Any = None) -> Iterator[Recorder]:
    """Connect one :class:`Recorder` to each of *signals* for the duration of the block."""
    recorder = Recorder()
    with ExitStack() as stack:
        for signal in signals:
            stack.enter_context(connected_to(recorder.receive, signal, sender))
        yield recorder


# -- a real server -----------------------------------------------------------------------


class ServerThread:
    """A uvicorn server running *app* in a background thread (127.0.0.1, port 0)."""

    def __init__(self, app: ASGIApp, loop: LoopName = "asyncio", **options: Any) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            lifespan="on",
            loop=loop,
            log_level="warning",
            # No logging.config.dictConfig(): uvicorn's records then propagate to the root
            # logger, where pytest's caplog sees them.
            log_config=None,
            **options,
        )
        self.server = uvicorn.Server(config)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="uvicorn-test-server", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run()
        except BaseException as exc:  # SystemExit when the startup fails
            self.error = exc

    def start(self) -> None:
        """Start the server and wait (bounded) until it listens."""
        self.thread.start()
        deadline = time.monotonic() + WAIT
        while not self.server.started and self.thread.is_alive():
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("uvicorn did not start")
            time.sleep(0.005)
        if not self.server.started:
            self.thread.join(WAIT)
            raise RuntimeError(f"uvicorn did not start: {self.error!r}")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "uvicorn did not stop"

    @property
    def port(self) -> int:
        port: int = self.server.servers[0].sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.server.servers[0].get_loop()

    def call(self, func: Callable[[], Awaitable[T]]) -> T:
        """Run ``await func()`` on the server's event loop and return its result."""

        async def run() -> T:
            return await func()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(WAIT)

    def task_count(self) -> int:
        """How many tasks the server's loop has, not counting the one that counts."""

        async def count() -> int:
            return len(asyncio.all_tasks()) - 1

        return self.call(count)


@contextmanager
def serving(app: ASGIApp, loop: LoopName = "asyncio", **options: Any) -> Iterator[ServerThread]:
    """Serve *app* with uvicorn (more ``uvicorn.Config`` *options*) while the block runs."""
    server = ServerThread(app, loop, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def failed_startup(app: ASGIApp, loop: LoopName = "asyncio") -> ServerThread:
    """Run *app* under uvicorn, expecting the startup to fail; return the stopped server."""
    server = ServerThread(app, loop)
    server.thread.start()
    server.thread.join(WAIT)
    if server.thread.is_alive():
        server.stop()
        raise AssertionError("uvicorn started although the startup should have failed")
    return server


def wait_until(condition: Callable[[], bool]) -> bool:
    """Poll *condition* for at most WAIT seconds; return its last value."""
    deadline = time.monotonic() + WAIT
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    return condition()


@contextmanager
def silenced(*names: str) -> Iterator[None]:
    """Drop the records of the named loggers while the block runs (for load tests)."""
    loggers = [logging.getLogger(name) for name in names]
    before = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, was in zip(loggers, before, strict=True):
            logger.disabled = was
