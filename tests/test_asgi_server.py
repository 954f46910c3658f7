"""``SignalMiddleware`` around Starlette and FastAPI applications under a real uvicorn.

The server runs in a background thread (see ``asgi_apps.serving``) on asyncio or uvloop;
the tests talk to it over loopback with httpx, raw sockets and the websockets client, and
wait (bounded) for the signals that its thread sends.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import websockets.sync.client
from asgi_apps import (
    FRAMEWORKS,
    LOOPS,
    SLOW_STREAM_CHUNKS,
    STREAM_CHUNKS,
    WAIT,
    AppError,
    Framework,
    LoopName,
    Probe,
    Received,
    ServerThread,
    failed_startup,
    make_app,
    make_starlette_app,
    recording,
    request_tag,
    serving,
    wait_until,
)
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from websockets.exceptions import ConnectionClosed

from asignals import (
    app_started,
    app_stopping,
    got_request_exception,
    request_finished,
    request_started,
)
from asignals.asgi import SignalMiddleware
from asignals.testing import connected_to

REQUEST_SIGNALS = (request_started, request_finished, got_request_exception)
EXCLUDE: list[str | re.Pattern[str]] = ["/health", re.compile(r"/metrics/.*")]


@dataclass
class Served:
    server: ServerThread
    probe: Probe
    framework: Framework

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, timeout=WAIT)

    def get(self, path: str) -> httpx.Response:
        with self.client() as client:
            return client.get(path)


@pytest.fixture(
    scope="module",
    params=[(framework, loop) for framework in FRAMEWORKS for loop in LOOPS],
    ids=lambda param: "-".join(param),
)
def shared_server(request: pytest.FixtureRequest) -> Iterator[Served]:
    """One server per framework and loop for this module (starting one takes a while)."""
    framework, loop = request.param
    probe = Probe()
    app = SignalMiddleware(make_app(framework, probe), websocket=True, exclude_paths=EXCLUDE)
    with serving(app, loop) as server:
        yield Served(server, probe, framework)


@pytest.fixture
def served(shared_server: Served) -> Served:
    shared_server.probe.reset()
    return shared_server


def paths(calls: list[Received]) -> list[str]:
    return [call.payload["scope"]["path"] for call in calls]


# -- HTTP ---------------------------------------------------------------------------------


def test_signals_around_a_request(served: Served) -> None:
    with recording(*REQUEST_SIGNALS) as recorder:
        recorder.on_call = lambda call: served.probe.record(call.signal.label)
        response = served.get("/")
        recorder.wait_for(request_finished)

    assert response.status_code == 200
    assert served.probe.events == ["request_started", "endpoint", "request_finished"]
    (started,) = recorder.of(request_started)
    (finished,) = recorder.of(request_finished)
    assert started.sender is SignalMiddleware
    assert finished.sender is SignalMiddleware
    scope = started.payload["scope"]
    assert scope["type"] == "http"
    assert scope["path"] == "/"
    assert finished.payload["scope"] is scope
    payload = dict(finished.payload)
    duration = payload.pop("duration")
    assert isinstance(duration, float)
    assert duration > 0
    assert payload == {
        "scope": scope,
        "status_code": 200,
        "response_complete": True,
        "disconnected": False,
        "exception": None,
        "close_code": None,
    }
    assert recorder.of(got_request_exception) == []


def test_status_codes(served: Served) -> None:
    with recording(request_finished) as recorder, served.client() as client:
        for code in (201, 404, 503):
            assert client.get(f"/status/{code}").status_code == code
        calls = recorder.wait_for(request_finished, 3)
    assert [call.payload["status_code"] for call in calls] == [201, 404, 503]


def test_streaming_response(served: Served) -> None:
    with recording(*REQUEST_SIGNALS) as recorder:
        response = served.get("/stream")
        (finished,) = recorder.wait_for(request_finished)
    assert response.status_code == 200
    assert response.text == "".join(f"chunk {i}\n" for i in range(STREAM_CHUNKS))
    assert finished.payload["status_code"] == 200
    assert finished.payload["response_complete"] is True
    # Starlette's StreamingResponse calls receive() after the body: that http.disconnect
    # is no client disconnect.
    assert finished.payload["disconnected"] is False
    assert finished.payload["close_code"] is None
    assert recorder.names() == ["request_started", "request_finished"]


def test_raising_endpoint(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    with recording(*REQUEST_SIGNALS) as recorder:
        response = served.get("/error")
        (finished,) = recorder.wait_for(request_finished)

    assert response.status_code == 500
    (raised,) = served.probe.raised
    assert recorder.names() == ["request_started", "got_request_exception", "request_finished"]
    (reported,) = recorder.of(got_request_exception)
    assert reported.sender is SignalMiddleware
    assert reported.payload["exception"] is raised
    assert reported.payload["scope"] is finished.payload["scope"]
    assert finished.payload["exception"] is raised
    # Starlette's ServerErrorMiddleware (inside SignalMiddleware) sent the 500, then
    # re-raised for the server, which logged it: the exception came out unchanged.
    assert finished.payload["status_code"] == 500
    assert finished.payload["response_complete"] is True
    # The server logs it after the middleware has re-raised it.
    assert wait_until(lambda: any(r.name == "uvicorn.error" for r in caplog.records))
    (logged,) = [r for r in caplog.records if r.name == "uvicorn.error"]
    assert logged.exc_info is not None
    assert logged.exc_info[1] is raised


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed before {marker!r}: {data!r}"
        data += chunk
    return data


def test_client_disconnects_mid_stream(served: Served) -> None:
    finished = threading.Event()

    def on_call(call: Received) -> None:
        if call.signal is request_finished:
            finished.set()

    with recording(*REQUEST_SIGNALS) as recorder:
        recorder.on_call = on_call
        with socket.create_connection(("127.0.0.1", served.server.port), timeout=WAIT) as sock:
            sock.sendall(b"GET /slow-stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            data = read_until(sock, b"chunk 0\n")
        assert data.startswith(b"HTTP/1.1 200 ")
        assert finished.wait(WAIT)
        # A request after it, finished too: the streaming request had its one signal.
        assert served.get("/").status_code == 200
        recorder.wait_for(request_finished, 2)

    assert paths(recorder.of(request_started)) == ["/slow-stream", "/"]
    assert paths(recorder.of(request_finished)) == ["/slow-stream", "/"]
    payload = recorder.of(request_finished)[0].payload
    assert payload["disconnected"] is True
    assert payload["response_complete"] is False
    assert payload["status_code"] == 200
    assert payload["close_code"] is None
    # uvicorn (h11) speaks ASGI 2.3: Starlette's StreamingResponse listens for the
    # disconnect and stops streaming; no ClientDisconnect escapes.
    assert payload["exception"] is None
    assert recorder.of(got_request_exception) == []
    assert served.probe.chunks_sent < SLOW_STREAM_CHUNKS


def test_background_tasks_and_dependencies_finish_first(served: Served) -> None:
    with recording(request_finished) as recorder:
        recorder.on_call = lambda call: served.probe.record("request_finished")
        response = served.get("/background")
        recorder.wait_for(request_finished)

    assert response.status_code == 200
    events = served.probe.events
    assert events[-1] == "request_finished"
    assert events.count("request_finished") == 1
    assert "background" in events
    if served.framework == "fastapi":
        assert "teardown" in events  # the dependency with yield
    else:
        assert events == ["endpoint", "background", "request_finished"]


@pytest.mark.parametrize("path", ["/ctx", "/ctx-sync"])
def test_context_variable_reaches_the_endpoint(served: Served, path: str) -> None:
    def tag(scope: Any, **kwargs: Any) -> None:
        request_tag.set(f"tagged {scope['path']}")

    with connected_to(tag, request_started):
        response = served.get(path)
    assert response.status_code == 200
    assert response.text == f"tagged {path}"
    assert served.get(path).text == "unset"  # the receiver is gone, and so is the tag


def test_raising_request_started_receiver_fails_the_request(served: Served) -> None:
    def refuse(**kwargs: Any) -> None:
        raise PermissionError("refused")

    with recording(request_finished) as recorder, connected_to(refuse, request_started):
        response = served.get("/")
        (finished,) = recorder.wait_for(request_finished)
    assert response.status_code == 500
    assert "endpoint" not in served.probe.events
    assert isinstance(finished.payload["exception"], PermissionError)
    # The app never ran, so no response went through the middleware: uvicorn sent its
    # own 500 once the exception reached it, and that is the status reported.
    assert finished.payload["status_code"] == 500


def test_failing_request_finished_receiver(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("metrics backend down")

    # Connected first, so it has run (and failed) once the recorder sees the call.
    with connected_to(broken, request_finished), recording(request_finished) as recorder:
        with served.client() as client:
            statuses = [client.get("/").status_code for _ in range(3)]
        recorder.wait_for(request_finished, 3)
    assert statuses == [200, 200, 200]
    failures = [r for r in caplog.records if r.name == "asignals"]
    assert len(failures) == 3
    assert all(r.exc_info is not None and r.exc_info[0] is RuntimeError for r in failures)


def test_concurrent_requests_get_their_own_payloads(served: Served) -> None:
    with recording(request_finished) as recorder, ThreadPoolExecutor(2) as pool:
        # /pair holds each request until the other one has arrived: they overlap.
        results = list(
            pool.map(lambda path: served.get(path).status_code, ["/pair/201", "/pair/503"])
        )
        recorder.wait_for(request_finished, 2)
    assert results == [201, 503]
    statuses = {
        call.payload["scope"]["path"]: call.payload["status_code"] for call in recorder.calls
    }
    assert statuses == {"/pair/201": 201, "/pair/503": 503}


def test_excluded_paths(served: Served) -> None:
    with recording(*REQUEST_SIGNALS) as recorder, served.client() as client:
        assert client.get("/health").status_code == 200
        assert client.get("/metrics/cpu").status_code == 200
        assert client.get("/metrics").status_code == 404
        assert client.get("/").status_code == 200
        recorder.wait_for(request_finished, 2)
    assert paths(recorder.of(request_started)) == ["/metrics", "/"]
    assert paths(recorder.of(request_finished)) == ["/metrics", "/"]


# -- websockets ----------------------------------------------------------------------------


def test_websocket_signals(served: Served) -> None:
    with recording(*REQUEST_SIGNALS) as recorder:
        with websockets.sync.client.connect(f"{served.server.ws_url}/ws") as ws:
            ws.send("hello")
            assert ws.recv(timeout=WAIT) == "hello"
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=WAIT)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 4001
        (finished,) = recorder.wait_for(request_finished)

    assert recorder.names() == ["request_started", "request_finished"]
    scope = recorder.of(request_started)[0].payload["scope"]
    assert scope["type"] == "websocket"
    assert finished.payload["scope"] is scope
    assert finished.payload["close_code"] == 4001
    assert finished.payload["response_complete"] is True
    assert finished.payload["status_code"] is None
    assert finished.payload["exception"] is None


def test_websocket_closed_by_the_client(served: Served) -> None:
    with recording(request_finished) as recorder:
        with websockets.sync.client.connect(f"{served.server.ws_url}/ws-echo") as ws:
            ws.send("ping")
            assert ws.recv(timeout=WAIT) == "ping"
        (finished,) = recorder.wait_for(request_finished)
    assert "ws-disconnect" in served.probe.events
    assert finished.payload["disconnected"] is True
    assert finished.payload["close_code"] == 1000
    assert finished.payload["response_complete"] is False


def test_websocket_without_opt_in_sends_nothing() -> None:
    probe = Probe()
    with (
        serving(SignalMiddleware(make_starlette_app(probe))) as server,
        recording(*REQUEST_SIGNALS) as recorder,
    ):
        with websockets.sync.client.connect(f"{server.ws_url}/ws-echo") as ws:
            ws.send("ping")
            assert ws.recv(timeout=WAIT) == "ping"
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/").status_code == 200
        recorder.wait_for(request_finished)
        # The websocket ended before the HTTP request was made.
        assert "ws-disconnect" in probe.events
    assert paths(recorder.of(request_started)) == ["/"]
    assert paths(recorder.of(request_finished)) == ["/"]


# -- composition ---------------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_mounted_app_wrapped_twice_sends_once(loop: LoopName) -> None:
    probe = Probe()

    async def home(request: Request) -> Response:
        return PlainTextResponse("home")

    inner = SignalMiddleware(make_starlette_app(probe))
    outer = SignalMiddleware(Starlette(routes=[Route("/", home), Mount("/sub", app=inner)]))
    with serving(outer, loop) as server, recording(*REQUEST_SIGNALS) as recorder:
        # One connection each: uvicorn closes the connection of a request that raised.
        assert httpx.get(f"{server.url}/sub/", timeout=WAIT).status_code == 200
        assert httpx.get(f"{server.url}/sub/error", timeout=WAIT).status_code == 500
        assert httpx.get(f"{server.url}/", timeout=WAIT).status_code == 200
        recorder.wait_for(request_finished, 3)
    assert paths(recorder.of(request_started)) == ["/sub/", "/sub/error", "/"]
    assert paths(recorder.of(request_finished)) == ["/sub/", "/sub/error", "/"]
    assert paths(recorder.of(got_request_exception)) == ["/sub/error"]
    assert recorder.of(got_request_exception)[0].payload["exception"] is probe.raised[0]


def test_installed_as_starlette_middleware() -> None:
    """In Starlette's middleware list, ServerErrorMiddleware sends the 500 outside of it."""
    probe = Probe()
    app = make_starlette_app(probe)
    app.user_middleware.insert(0, Middleware(SignalMiddleware, exclude_paths=EXCLUDE))
    with serving(app) as server, recording(*REQUEST_SIGNALS) as recorder:
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/health").status_code == 200
            assert client.get("/error").status_code == 500
        (finished,) = recorder.wait_for(request_finished)
    assert recorder.names() == ["request_started", "got_request_exception", "request_finished"]
    assert finished.payload["exception"] is probe.raised[0]
    # No response started inside the middleware; ServerErrorMiddleware outside it sends
    # the 500 the client gets, and that is the status reported.
    assert finished.payload["status_code"] == 500


# -- lifespan ------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_lifespan_signals(framework: Framework, loop: LoopName) -> None:
    probe = Probe()

    def open_pool(scope: Any, **kwargs: Any) -> None:
        probe.record("app_started")
        scope["state"]["ready"] = "pool open"  # requests get a copy of the lifespan state

    def close_pool(**kwargs: Any) -> None:
        probe.record("app_stopping")

    app = SignalMiddleware(make_app(framework, probe))
    with (
        recording(app_started, app_stopping) as recorder,
        connected_to(open_pool, app_started),
        connected_to(close_pool, app_stopping),
    ):
        with serving(app, loop) as server:
            assert probe.events == ["lifespan-startup", "app_started"]
            assert httpx.get(f"{server.url}/state", timeout=WAIT).text == "pool open"
            assert recorder.names() == ["app_started"]
        assert probe.events == [
            "lifespan-startup",
            "app_started",
            "app_stopping",
            "lifespan-shutdown",
        ]
    assert recorder.names() == ["app_started", "app_stopping"]
    assert all(call.sender is SignalMiddleware for call in recorder.calls)
    assert {call.payload["scope"]["type"] for call in recorder.calls} == {"lifespan"}


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_raising_app_started_receiver_fails_the_startup(
    framework: Framework, caplog: pytest.LogCaptureFixture
) -> None:
    probe = Probe()

    def cannot_open(**kwargs: Any) -> None:
        raise ConnectionRefusedError("database down")

    with recording(app_stopping) as recorder, connected_to(cannot_open, app_started):
        server = failed_startup(SignalMiddleware(make_app(framework, probe)))
    assert not server.server.started
    assert isinstance(server.error, SystemExit)
    assert "Application startup failed" in caplog.text
    assert "database down" in caplog.text
    assert probe.events == ["lifespan-startup"]
    assert recorder.calls == []


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_app_startup_failure_reaches_the_server(
    framework: Framework, caplog: pytest.LogCaptureFixture
) -> None:
    probe = Probe()
    probe.fail_startup = True
    with recording(app_started, app_stopping) as recorder:
        server = failed_startup(SignalMiddleware(make_app(framework, probe)))
    assert not server.server.started
    assert isinstance(server.error, SystemExit)
    assert "Application startup failed" in caplog.text
    assert AppError.__name__ in caplog.text
    assert recorder.calls == []


@pytest.mark.parametrize("loop", LOOPS)
def test_request_cancelled_by_the_server_still_finishes(
    loop: LoopName, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn cancels the requests still running when its graceful shutdown times out."""
    probe = Probe()
    app = SignalMiddleware(make_starlette_app(probe))
    with recording(*REQUEST_SIGNALS) as recorder:
        server = ServerThread(app, loop, timeout_graceful_shutdown=0.1)
        server.start()
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
                sock.sendall(b"GET /slow-stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                read_until(sock, b"chunk 0\n")
                server.stop()  # while the response is still streaming
        finally:
            server.stop()
        (finished,) = recorder.wait_for(request_finished)
    assert "timeout graceful shutdown exceeded" in caplog.text
    assert probe.chunks_sent < SLOW_STREAM_CHUNKS
    assert recorder.names() == ["request_started", "request_finished"]  # not an error
    assert finished.payload["exception"] is None
    assert finished.payload["status_code"] == 200
    assert finished.payload["response_complete"] is False
