"""``SignalMiddleware`` called directly, with fake ``receive`` and ``send`` (no server).

These tests pin what a server cannot show: which callables the app receives, that the
middleware never calls ``receive`` itself, cancellation of the request, the bound on the
shield, and the exact messages of the error paths. They run on asyncio, uvloop and trio.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from asgi_apps import AppError, Recorder, recording, request_tag
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse

from asignals import (
    AsyncSignal,
    app_started,
    app_stopping,
    got_request_exception,
    request_finished,
    request_started,
)
from asignals.asgi import ASGIApp, Message, Receive, Scope, Send, SignalMiddleware
from asignals.testing import capture, connected_to

pytestmark = pytest.mark.anyio

REQUEST_SIGNALS = (request_started, request_finished, got_request_exception)


# -- fakes -------------------------------------------------------------------------------


def http_scope(path: str = "/", spec_version: str = "2.3") -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec_version},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def websocket_scope(path: str = "/ws") -> Scope:
    scope = http_scope(path)
    scope.update(type="websocket", scheme="ws", subprotocols=[])
    del scope["method"]
    return scope


class FakeServer:
    """The server side of one connection: scripted incoming messages, recorded output."""

    def __init__(
        self,
        incoming: list[Message] | None = None,
        then: Message | None = None,
        send_error: BaseException | None = None,
    ) -> None:
        self.incoming = list(incoming or [])
        self.then = then  # returned once *incoming* is used up (None: wait forever)
        self.send_error = send_error
        self.sent: list[Message] = []
        self.receive_calls = 0

    async def receive(self) -> Message:
        self.receive_calls += 1
        if self.incoming:
            return self.incoming.pop(0)
        if self.then is None:
            await anyio.sleep_forever()
        assert self.then is not None
        return self.then

    def channel(self) -> tuple[Receive, Send]:
        return self.receive, self.send

    async def send(self, message: Message) -> None:
        if self.send_error is not None:
            raise self.send_error
        self.sent.append(message)


async def respond(send: Send, status: int = 200, body: bytes = b"ok") -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    await respond(send)


def only(recorder: Recorder, signal: AsyncSignal) -> dict[str, Any]:
    """The payload of the one call of *signal* (asserting there was exactly one)."""
    calls = recorder.of(signal)
    assert len(calls) == 1, calls
    return calls[0].payload


@contextmanager
def all_connected(*receivers: tuple[Callable[..., Any], AsyncSignal]) -> Iterator[None]:
    with ExitStack() as stack:
        for receiver, signal in receivers:
            stack.enter_context(connected_to(receiver, signal))
        yield


# -- constructor -------------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param({"app": None}, TypeError, "needs an ASGI application", id="app-none"),
        pytest.param({"app": "main:app"}, TypeError, "needs an ASGI application", id="app-str"),
        pytest.param(
            {"exclude_paths": "/health"}, TypeError, r"exclude_paths=\['/health'\]", id="str"
        ),
        pytest.param({"exclude_paths": [b"/health"]}, TypeError, "items must be", id="bytes"),
        pytest.param({"exclude_paths": ["/a", 1]}, TypeError, "got 1", id="int"),
        pytest.param({"exclude_paths": [None]}, TypeError, "items must be", id="none"),
        pytest.param({"finish_timeout": "5"}, TypeError, "number", id="timeout-str"),
        pytest.param({"finish_timeout": 0}, ValueError, "positive", id="timeout-0"),
        pytest.param({"finish_timeout": -1.5}, ValueError, "positive", id="timeout-neg"),
        pytest.param({"finish_timeout": math.nan}, ValueError, "positive", id="timeout-nan"),
    ],
)
async def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    kwargs.setdefault("app", ok_app)
    with pytest.raises(error, match=match):
        SignalMiddleware(**kwargs)


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
async def test_good_arguments() -> None:
    exclude: Iterator[str | re.Pattern[str]] = iter(["/health", re.compile(r"/metrics/.*")])
    middleware = SignalMiddleware(ok_app, exclude_paths=exclude, finish_timeout=0.5)
    assert middleware.app is ok_app
    assert middleware.sender is SignalMiddleware
    assert middleware.finish_timeout == 0.5
    assert SignalMiddleware(ok_app, sender="api").sender == "api"


# -- the request signals ------------------------------------------------------------------


async def test_weak_receivers_reached_through_the_middleware_are_collected_silently(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The middleware runs the request signals' plans itself (not through send()): it
    notes that their receivers were sent to, so their later collection is no mistake."""
    calls: list[str] = []

    class Metrics:
        def started(self, **kwargs: Any) -> None:
            calls.append("started")

        def finished(self, **kwargs: Any) -> None:
            calls.append("finished")

    metrics = Metrics()
    request_started.connect(metrics.started)
    request_finished.connect(metrics.finished)
    with caplog.at_level(logging.WARNING, logger="asignals"):
        await SignalMiddleware(ok_app)(http_scope(), *FakeServer().channel())
        del metrics
        gc.collect()
    assert calls == ["started", "finished"]
    assert "before it was ever called" not in caplog.text
    assert not request_started.has_listeners()
    assert not request_finished.has_listeners()


async def test_signals_around_a_response() -> None:
    order: list[str] = []
    scope = http_scope()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        order.append("app")
        await respond(send, 201, b"made")

    server = FakeServer()
    with recording(*REQUEST_SIGNALS) as recorder:
        recorder.on_call = lambda call: order.append(call.signal.label)
        await SignalMiddleware(app)(scope, server.receive, server.send)

    assert order == ["request_started", "app", "request_finished"]
    started = recorder.of(request_started)[0]
    assert started.sender is SignalMiddleware
    assert started.payload == {"scope": scope}
    assert started.payload["scope"] is scope
    finished = recorder.of(request_finished)[0]
    assert finished.sender is SignalMiddleware
    payload = finished.payload
    duration = payload.pop("duration")
    assert isinstance(duration, float)
    assert duration > 0
    assert payload == {
        "scope": scope,
        "status_code": 201,
        "response_complete": True,
        "disconnected": False,
        "exception": None,
        "close_code": None,
    }
    assert payload["scope"] is scope
    assert [m["type"] for m in server.sent] == ["http.response.start", "http.response.body"]


async def test_custom_sender() -> None:
    sender = object()
    with recording(*REQUEST_SIGNALS, sender=sender) as recorder:
        await SignalMiddleware(ok_app)(http_scope(), *FakeServer().channel())
        assert recorder.calls == []  # connected for another sender: nothing
        await SignalMiddleware(ok_app, sender=sender)(http_scope(), *FakeServer().channel())
    assert recorder.names() == ["request_started", "request_finished"]
    assert {call.sender for call in recorder.calls} == {sender}


async def test_request_started_runs_in_the_request_task() -> None:
    seen: list[str] = []

    def tag(**kwargs: Any) -> None:
        request_tag.set("from-receiver")

    async def tag_async(**kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(request_tag.get())  # the sync receiver ran first, in this context

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(request_tag.get())
        await respond(send)

    with all_connected((tag, request_started), (tag_async, request_started)):
        async with anyio.create_task_group() as group:  # a task, as a server would start
            group.start_soon(SignalMiddleware(app), http_scope(), *FakeServer().channel())
    assert seen == ["from-receiver", "from-receiver"]
    assert request_tag.get() == "unset"  # the tag lived in the request's task only


async def test_progress_of_a_response_without_end() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})

    with recording(request_finished) as recorder:
        await SignalMiddleware(app)(http_scope(), *FakeServer().channel())
    payload = only(recorder, request_finished)
    assert payload["status_code"] == 200
    assert payload["response_complete"] is False


async def test_app_without_response() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        pass

    with recording(request_finished) as recorder:
        await SignalMiddleware(app)(http_scope(), *FakeServer().channel())
    payload = only(recorder, request_finished)
    assert payload["status_code"] is None
    assert payload["response_complete"] is False
    assert payload["exception"] is None


# -- exceptions ---------------------------------------------------------------------------


async def test_exception_is_reported_and_reraised_unchanged() -> None:
    error = AppError("boom")
    scope = http_scope()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200})
        raise error

    order: list[str] = []
    with recording(*REQUEST_SIGNALS) as recorder:
        recorder.on_call = lambda call: order.append(call.signal.label)
        with pytest.raises(AppError) as info:
            await SignalMiddleware(app)(scope, *FakeServer().channel())

    assert info.value is error
    assert order == ["request_started", "got_request_exception", "request_finished"]
    reported = only(recorder, got_request_exception)
    assert reported == {"scope": scope, "exception": error}
    assert reported["exception"] is error
    finished = only(recorder, request_finished)
    assert finished["exception"] is error
    assert finished["status_code"] == 200
    assert finished["response_complete"] is False


async def test_failing_got_request_exception_receiver_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = AppError("boom")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise error

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver broke")

    with (
        recording(request_finished) as recorder,
        connected_to(broken, got_request_exception),
        pytest.raises(AppError) as info,
    ):
        await SignalMiddleware(app)(http_scope(), *FakeServer().channel())
    assert info.value is error  # the app's exception, not the receiver's
    assert only(recorder, request_finished)["exception"] is error
    assert "receiver broke" in caplog.text


async def test_failing_request_finished_receiver_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("finished receiver broke")

    server = FakeServer()
    with recording(request_finished) as recorder, connected_to(broken, request_finished):
        await SignalMiddleware(ok_app)(http_scope(), server.receive, server.send)
    assert only(recorder, request_finished)["status_code"] == 200
    assert server.sent[0]["status"] == 200
    failures = [r for r in caplog.records if r.name == "asignals"]
    assert len(failures) == 1
    assert failures[0].levelno == logging.ERROR
    assert failures[0].exc_info is not None
    assert str(failures[0].exc_info[1]) == "finished receiver broke"


async def test_raising_request_started_receiver_fails_the_request() -> None:
    calls: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append("app")
        await respond(send)

    def refuse(**kwargs: Any) -> None:
        raise PermissionError("no")

    server = FakeServer()
    with (
        recording(*REQUEST_SIGNALS) as recorder,
        connected_to(refuse, request_started),
        pytest.raises(PermissionError),
    ):
        await SignalMiddleware(app)(http_scope(), server.receive, server.send)
    assert calls == []
    assert server.sent == []
    # request_started was sent (and failed), so the request still reports its end.
    assert isinstance(only(recorder, request_finished)["exception"], PermissionError)
    # ...but the app never ran, so nothing escaped *it*: no got_request_exception (as Django).
    assert recorder.of(got_request_exception) == []


async def test_a_failing_send_hook_on_request_started_fails_the_request_like_a_receiver() -> None:
    """A send hook (a Redis bridge that cannot encode the scope, say) sees request_started
    as it is sent: its failure fails the request exactly as a failing receiver's, and the
    request still reports its end."""
    from asignals import _hooks

    class FailingHook:
        def __call__(self, sender: Any, payload: dict[str, Any], plan: Any) -> Any:
            raise ValueError("cannot carry this send")

        def observes(self, sender: Any) -> bool:
            return True

    calls: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append("app")
        await respond(send)

    hook = FailingHook()
    server = FakeServer()
    _hooks.add_hook(request_started, hook, _hooks.BRIDGE)
    try:
        with recording(request_finished) as recorder, pytest.raises(ValueError, match="carry"):
            await SignalMiddleware(app)(http_scope(), server.receive, server.send)
    finally:
        _hooks.remove_hook(request_started, hook)
    assert calls == []
    finished = only(recorder, request_finished)
    assert isinstance(finished["exception"], ValueError)
    assert finished["status_code"] == 500


# -- cancellation --------------------------------------------------------------------------


async def test_cancelled_request_still_finishes() -> None:
    app_started_sleeping = anyio.Event()
    finished_receiver_done: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200})
        app_started_sleeping.set()
        await anyio.sleep(30)

    async def slow_but_fine(**kwargs: Any) -> None:
        await anyio.sleep(0.01)  # awaits while its request is being cancelled
        finished_receiver_done.append(True)

    with (
        recording(*REQUEST_SIGNALS) as recorder,
        connected_to(slow_but_fine, request_finished),
    ):
        async with anyio.create_task_group() as group:
            group.start_soon(SignalMiddleware(app), http_scope(), *FakeServer().channel())
            await app_started_sleeping.wait()
            group.cancel_scope.cancel()

    assert finished_receiver_done == [True]
    assert recorder.of(got_request_exception) == []  # cancellation is not an error
    payload = only(recorder, request_finished)
    assert payload["exception"] is None
    assert payload["status_code"] == 200
    assert payload["response_complete"] is False


async def test_finish_timeout_bounds_the_shield(caplog: pytest.LogCaptureFixture) -> None:
    reached_end: list[bool] = []
    entered = anyio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await anyio.sleep(30)

    async def too_slow(**kwargs: Any) -> None:
        entered.set()
        await anyio.sleep(30)
        reached_end.append(True)

    with connected_to(too_slow, request_finished):
        async with anyio.create_task_group() as group:
            group.start_soon(
                SignalMiddleware(app, finish_timeout=0.05),
                http_scope(),
                FakeServer().receive,
                FakeServer().send,
            )
            await anyio.sleep(0.01)
            group.cancel_scope.cancel()
    assert entered.is_set()
    assert reached_end == []
    assert "did not finish within finish_timeout=0.05s" in caplog.text


async def test_finish_timeout_does_not_bound_an_uninterrupted_request() -> None:
    finished: list[bool] = []

    async def slower_than_the_bound(**kwargs: Any) -> None:
        await anyio.sleep(0.1)
        finished.append(True)

    with connected_to(slower_than_the_bound, request_finished):
        await SignalMiddleware(ok_app, finish_timeout=0.01)(http_scope(), *FakeServer().channel())
    assert finished == [True]


async def test_cancelled_while_reporting_the_exception_still_finishes() -> None:
    """A cancellation that lands in a got_request_exception receiver is an interruption too."""

    async def failing_app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AppError("boom")

    async def slow_reporter(**kwargs: Any) -> None:
        await anyio.sleep(30)

    finished: list[dict[str, Any]] = []

    async def note_finished(**kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()  # a checkpoint: it must not be cancelled here
        finished.append(kwargs)

    with (
        connected_to(slow_reporter, got_request_exception),
        connected_to(note_finished, request_finished),
        anyio.move_on_after(0.05) as scope,
    ):
        await SignalMiddleware(failing_app)(http_scope(), *FakeServer().channel())
    assert scope.cancelled_caught
    [payload] = finished
    assert isinstance(payload["exception"], AppError)


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
async def test_cancelled_asyncio_task_still_finishes() -> None:
    sleeping = asyncio.Event()
    receiver_done: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        sleeping.set()
        await asyncio.sleep(30)

    async def awaits_briefly(**kwargs: Any) -> None:
        await asyncio.sleep(0.01)
        receiver_done.append("done")

    with recording(*REQUEST_SIGNALS) as recorder, connected_to(awaits_briefly, request_finished):
        task = asyncio.ensure_future(SignalMiddleware(app)(http_scope(), *FakeServer().channel()))
        await sleeping.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert task.cancelled()
    assert receiver_done == ["done"]
    assert recorder.of(got_request_exception) == []
    payload = only(recorder, request_finished)
    assert payload["exception"] is None
    assert payload["status_code"] is None


# -- disconnects ---------------------------------------------------------------------------


async def test_middleware_never_calls_receive() -> None:
    server = FakeServer(then={"type": "http.disconnect"})
    with recording(*REQUEST_SIGNALS) as recorder:
        await SignalMiddleware(ok_app)(http_scope(), server.receive, server.send)
    assert server.receive_calls == 0
    assert only(recorder, request_finished)["disconnected"] is False


async def test_disconnect_before_the_response_completes() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "http.request"
        await send({"type": "http.response.start", "status": 200})
        assert (await receive())["type"] == "http.disconnect"

    server = FakeServer([{"type": "http.request", "body": b""}], then={"type": "http.disconnect"})
    with recording(request_finished) as recorder:
        await SignalMiddleware(app)(http_scope(), server.receive, server.send)
    payload = only(recorder, request_finished)
    assert payload["disconnected"] is True
    assert payload["close_code"] is None  # HTTP has no close code
    assert payload["response_complete"] is False


async def test_disconnect_message_after_the_response_is_no_disconnect() -> None:
    """Servers answer receive() with http.disconnect after the response: not a disconnect."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send)
        assert (await receive())["type"] == "http.disconnect"

    server = FakeServer(then={"type": "http.disconnect"})
    with recording(request_finished) as recorder:
        await SignalMiddleware(app)(http_scope(), server.receive, server.send)
    payload = only(recorder, request_finished)
    assert payload["disconnected"] is False
    assert payload["close_code"] is None
    assert payload["response_complete"] is True


async def test_send_failing_with_oserror_means_disconnected() -> None:
    gone = OSError("client went away")  # uvicorn raises ClientDisconnected(OSError)
    server = FakeServer(send_error=gone)
    with recording(*REQUEST_SIGNALS) as recorder, pytest.raises(OSError, match="went away") as info:
        await SignalMiddleware(ok_app)(http_scope(), server.receive, server.send)
    assert info.value is gone
    payload = only(recorder, request_finished)
    assert payload["disconnected"] is True
    assert payload["status_code"] is None  # the start message never reached the client
    assert payload["exception"] is gone
    assert only(recorder, got_request_exception)["exception"] is gone


async def test_starlette_streaming_disconnect_on_asgi_2_4_is_an_exception() -> None:
    """On an ASGI 2.4 server, Starlette turns the OSError into ClientDisconnect, which escapes."""

    async def chunks() -> Any:
        yield b"never sent"

    server = FakeServer(send_error=OSError("client went away"))
    with recording(*REQUEST_SIGNALS) as recorder, pytest.raises(ClientDisconnect):
        await SignalMiddleware(StreamingResponse(chunks()))(
            http_scope(spec_version="2.4"), server.receive, server.send
        )
    assert server.receive_calls == 0
    assert isinstance(only(recorder, got_request_exception)["exception"], ClientDisconnect)
    payload = only(recorder, request_finished)
    assert payload["disconnected"] is True
    assert isinstance(payload["exception"], ClientDisconnect)


# -- per-request state ---------------------------------------------------------------------


async def test_concurrent_requests_keep_their_own_state() -> None:
    both_in = anyio.Event()
    arrived: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        status = int(scope["path"].strip("/"))
        await send({"type": "http.response.start", "status": status})
        arrived.append(status)
        if len(arrived) == 2:
            both_in.set()
        await both_in.wait()
        if status == 500:
            raise AppError(str(status))
        await send({"type": "http.response.body", "body": b""})

    middleware = SignalMiddleware(app)

    async def call(path: str) -> None:
        with pytest.raises(AppError) if path == "/500" else ExitStack():
            await middleware(http_scope(path), *FakeServer().channel())

    with recording(request_finished) as recorder:
        async with anyio.create_task_group() as group:
            group.start_soon(call, "/201")
            group.start_soon(call, "/500")

    by_path = {call.payload["scope"]["path"]: call.payload for call in recorder.calls}
    assert by_path["/201"]["status_code"] == 201
    assert by_path["/201"]["response_complete"] is True
    assert by_path["/201"]["exception"] is None
    assert by_path["/500"]["status_code"] == 500
    assert by_path["/500"]["response_complete"] is False
    assert isinstance(by_path["/500"]["exception"], AppError)


async def test_each_request_starts_from_the_default_payload() -> None:
    """What one request's messages told (an exception, a disconnect, a status) is not in the
    next request's payload."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/first":
            assert (await receive())["type"] == "http.disconnect"
            raise AppError("first")
        await respond(send)

    middleware = SignalMiddleware(app)
    disconnecting = FakeServer([{"type": "http.disconnect"}])
    with recording(request_finished) as recorder:
        with pytest.raises(AppError):
            await middleware(http_scope("/first"), *disconnecting.channel())
        await middleware(http_scope("/second"), *FakeServer().channel())
    first, second = (call.payload for call in recorder.calls)
    assert first["disconnected"] is True
    assert isinstance(first["exception"], AppError)
    assert second == {
        "scope": http_scope("/second"),
        "status_code": 200,
        "response_complete": True,
        "disconnected": False,
        "exception": None,
        "duration": second["duration"],
        "close_code": None,
    }
    assert list(second) == list(first)  # the items in the documented order, every time
    assert second["duration"] > 0


async def test_a_receiver_changing_its_arguments_does_not_change_the_next_receivers() -> None:
    seen: list[tuple[Any, Any]] = []

    async def meddling(sender: Any, **kwargs: Any) -> None:
        kwargs["status_code"] = 418
        kwargs["scope"]["path"] = "/meddled"  # the scope itself is the request's, shared
        kwargs.clear()

    def honest(sender: Any, **kwargs: Any) -> None:
        seen.append((kwargs["status_code"], kwargs["scope"]["path"]))

    with connected_to(meddling, request_finished), connected_to(honest, request_finished):
        await SignalMiddleware(ok_app)(http_scope("/"), *FakeServer().channel())
    assert seen == [(200, "/meddled")]


# -- when the middleware stays out of the way -----------------------------------------------


def passthrough_app(seen: list[tuple[Receive, Send]]) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((receive, send))
        if scope["type"] == "http":
            await respond(send)

    return app


async def test_no_receivers_passes_straight_through() -> None:
    seen: list[tuple[Receive, Send]] = []
    server = FakeServer()
    middleware = SignalMiddleware(passthrough_app(seen), websocket=True)
    await middleware(http_scope(), server.receive, server.send)
    await middleware(websocket_scope(), server.receive, server.send)
    # app_started and app_stopping receivers do not make requests send signals.
    with recording(app_started, app_stopping):
        await middleware(http_scope(), server.receive, server.send)
    assert seen == [(server.receive, server.send)] * 3


async def test_receivers_for_another_sender_pass_straight_through() -> None:
    seen: list[tuple[Receive, Send]] = []
    server = FakeServer()
    with recording(*REQUEST_SIGNALS, sender="another") as recorder:
        await SignalMiddleware(passthrough_app(seen))(http_scope(), server.receive, server.send)
    assert seen == [(server.receive, server.send)]
    assert recorder.calls == []


@pytest.mark.parametrize("signal", REQUEST_SIGNALS, ids=lambda s: s.name)
async def test_any_request_receiver_turns_signals_on(signal: AsyncSignal) -> None:
    seen: list[tuple[Receive, Send]] = []
    server = FakeServer()
    with recording(signal):
        await SignalMiddleware(passthrough_app(seen))(http_scope(), server.receive, server.send)
    assert seen != [(server.receive, server.send)]


async def test_connecting_and_disconnecting_between_requests_turn_signals_on_and_off() -> None:
    """Every request reads the signals' tables afresh: a receiver connected (or
    disconnected) between two requests is heard from (or not) at the very next one."""
    seen: list[tuple[Receive, Send]] = []
    server = FakeServer()
    middleware = SignalMiddleware(passthrough_app(seen))
    await middleware(http_scope("/before"), server.receive, server.send)
    with recording(request_finished) as recorder:
        await middleware(http_scope("/during"), server.receive, server.send)
    await middleware(http_scope("/after"), server.receive, server.send)
    straight = (server.receive, server.send)
    assert [pair == straight for pair in seen] == [True, False, True]
    assert [call.payload["scope"]["path"] for call in recorder.calls] == ["/during"]


@pytest.mark.parametrize("signal", REQUEST_SIGNALS, ids=lambda s: s.name)
async def test_a_capture_of_any_request_signal_alone_turns_signals_on(
    signal: AsyncSignal,
) -> None:
    """No receivers, and capture() on one of the three: that one sees the request's send,
    exactly once, whichever it is."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if signal is got_request_exception:
            raise AppError("boom")
        await respond(send)

    raises = pytest.raises(AppError) if signal is got_request_exception else ExitStack()
    with capture(signal) as sent, raises:
        await SignalMiddleware(app)(http_scope("/x"), *FakeServer().channel())
    assert [report.payload["scope"]["path"] for report in sent] == ["/x"]


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("/health", True),
        ("/health/", False),
        ("/healthz", False),
        ("/metrics/cpu", True),
        ("/metrics/", True),
        ("/metrics", False),
        ("/api/metrics/cpu", False),
        ("/", False),
    ],
)
async def test_excluded_paths(path: str, excluded: bool) -> None:
    seen: list[tuple[Receive, Send]] = []
    server = FakeServer()
    middleware = SignalMiddleware(
        passthrough_app(seen), exclude_paths=["/health", re.compile(r"/metrics/.*")]
    )
    with recording(*REQUEST_SIGNALS) as recorder:
        await middleware(http_scope(path), server.receive, server.send)
    if excluded:
        assert recorder.calls == []
        assert seen == [(server.receive, server.send)]
    else:
        assert recorder.names() == ["request_started", "request_finished"]


async def test_exclusions_by_pattern_only_and_scope_without_path() -> None:
    middleware = SignalMiddleware(ok_app, exclude_paths=[re.compile(r"/internal/.*")])
    scope = http_scope()
    del scope["path"]  # treated as "": not excluded
    with recording(*REQUEST_SIGNALS) as recorder:
        await middleware(scope, *FakeServer().channel())
        await middleware(http_scope("/internal/x"), *FakeServer().channel())
    assert recorder.names() == ["request_started", "request_finished"]


async def test_unknown_scope_types_pass_through() -> None:
    seen: list[Scope] = []
    server = FakeServer()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        assert (receive, send) == (server.receive, server.send)

    scope: Scope = {"type": "webtransport"}
    with recording(*REQUEST_SIGNALS) as recorder:
        await SignalMiddleware(app, websocket=True)(scope, server.receive, server.send)
    assert seen == [scope]
    assert recorder.calls == []


async def test_nested_middleware_sends_once() -> None:
    inner_calls: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        inner_calls.append(scope["path"])
        await respond(send)

    nested = SignalMiddleware(SignalMiddleware(SignalMiddleware(app)))
    with recording(*REQUEST_SIGNALS) as recorder:
        await nested(http_scope("/a"), *FakeServer().channel())
        await nested(http_scope("/b"), *FakeServer().channel())
    assert inner_calls == ["/a", "/b"]
    assert recorder.names() == ["request_started", "request_finished"] * 2


# -- websockets ----------------------------------------------------------------------------


async def ws_close_app(scope: Scope, receive: Receive, send: Send) -> None:
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "hello"})
    await send({"type": "websocket.close", "code": 4001})
    # The client answers the close; the disconnect does not replace the app's close code.
    assert (await receive())["type"] == "websocket.disconnect"


async def test_websocket_signals_are_opt_in() -> None:
    incoming: list[Message] = [{"type": "websocket.connect"}]
    then: Message = {"type": "websocket.disconnect", "code": 4001}
    with recording(*REQUEST_SIGNALS) as recorder:
        await SignalMiddleware(ws_close_app)(
            websocket_scope(), FakeServer(incoming, then).receive, FakeServer().send
        )
        assert recorder.calls == []
        await SignalMiddleware(ws_close_app, websocket=True)(
            websocket_scope(), FakeServer(incoming, then).receive, FakeServer().send
        )
    assert recorder.names() == ["request_started", "request_finished"]
    payload = only(recorder, request_finished)
    assert payload["close_code"] == 4001
    assert payload["status_code"] is None
    assert payload["response_complete"] is True
    assert payload["disconnected"] is True


@pytest.mark.parametrize(
    ("disconnect", "close_code"),
    [
        ({"type": "websocket.disconnect", "code": 1001}, 1001),
        ({"type": "websocket.disconnect"}, 1005),
    ],
    ids=["with-code", "without-code"],
)
async def test_websocket_client_disconnect(disconnect: Message, close_code: int) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    incoming: list[Message] = [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "hi"},
        disconnect,
    ]
    with recording(request_finished) as recorder:
        await SignalMiddleware(app, websocket=True)(
            websocket_scope(), FakeServer(incoming).receive, FakeServer().send
        )
    payload = only(recorder, request_finished)
    assert payload["close_code"] == close_code
    assert payload["disconnected"] is True
    assert payload["response_complete"] is False


async def test_websocket_close_without_code_and_denial_response() -> None:
    async def closes(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "websocket.close"})

    async def denies(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"no"})

    with recording(request_finished) as recorder:
        await SignalMiddleware(closes, websocket=True)(websocket_scope(), *FakeServer().channel())
        await SignalMiddleware(denies, websocket=True)(websocket_scope(), *FakeServer().channel())
    closed, denied = (call.payload for call in recorder.of(request_finished))
    assert closed["close_code"] == 1000
    assert closed["response_complete"] is True
    assert denied["status_code"] == 403
    assert denied["close_code"] is None


# -- lifespan -------------------------------------------------------------------------------


def lifespan_app(events: list[str]) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "lifespan.startup"
        events.append("startup")
        try:
            await send({"type": "lifespan.startup.complete"})
        except Exception as exc:
            events.append(f"startup failed: {exc}")
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            raise
        assert (await receive())["type"] == "lifespan.shutdown"
        events.append("shutdown")
        await send({"type": "lifespan.shutdown.complete"})

    return app


def lifespan_server() -> FakeServer:
    return FakeServer([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])


async def test_lifespan_signals() -> None:
    events: list[str] = []
    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    server = lifespan_server()

    def opened(**kwargs: Any) -> None:
        events.append("app_started")
        kwargs["scope"]["state"]["pool"] = "open"

    def closing(**kwargs: Any) -> None:
        events.append("app_stopping")

    with (
        recording(app_started, app_stopping, *REQUEST_SIGNALS) as recorder,
        all_connected((opened, app_started), (closing, app_stopping)),
    ):
        await SignalMiddleware(lifespan_app(events))(scope, server.receive, server.send)
    assert events == ["startup", "app_started", "app_stopping", "shutdown"]
    assert recorder.names() == ["app_started", "app_stopping"]
    assert all(call.payload == {"scope": scope} for call in recorder.calls)
    assert all(call.sender is SignalMiddleware for call in recorder.calls)
    assert scope["state"] == {"pool": "open"}
    assert [m["type"] for m in server.sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


async def test_lifespan_without_receivers() -> None:
    events: list[str] = []
    server = lifespan_server()
    await SignalMiddleware(lifespan_app(events))({"type": "lifespan"}, server.receive, server.send)
    assert events == ["startup", "shutdown"]


async def test_raising_app_started_receiver_fails_the_startup() -> None:
    events: list[str] = []
    server = lifespan_server()

    def cannot_open(**kwargs: Any) -> None:
        raise ConnectionError("database down")

    with connected_to(cannot_open, app_started), pytest.raises(ConnectionError):
        await SignalMiddleware(lifespan_app(events))(
            {"type": "lifespan"}, server.receive, server.send
        )
    assert events == ["startup", "startup failed: database down"]
    # The middleware tells the server itself (with the traceback), and only once: the
    # app's own startup.failed that follows is not passed on.
    [failed] = server.sent
    assert failed["type"] == "lifespan.startup.failed"
    assert "ConnectionError: database down" in failed["message"]


async def test_raising_app_started_receiver_fails_a_plain_asgi_app_startup() -> None:
    """An app that lets send()'s exception escape still gets its startup failure reported."""

    async def plain_app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})  # raises: not caught here

    def cannot_open(**kwargs: Any) -> None:
        raise ConnectionError("database down")

    server = lifespan_server()
    with connected_to(cannot_open, app_started), pytest.raises(ConnectionError):
        await SignalMiddleware(plain_app)({"type": "lifespan"}, server.receive, server.send)
    [failed] = server.sent
    assert failed["type"] == "lifespan.startup.failed"
    assert "database down" in failed["message"]


async def test_raising_app_stopping_receiver_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    events: list[str] = []
    server = lifespan_server()

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("stopping receiver broke")

    with connected_to(broken, app_stopping):
        await SignalMiddleware(lifespan_app(events))(
            {"type": "lifespan"}, server.receive, server.send
        )
    assert events == ["startup", "shutdown"]
    assert "stopping receiver broke" in caplog.text


async def test_capture_sees_the_request_signals_without_receivers() -> None:
    with capture(request_started) as started, capture(request_finished) as finished:
        await SignalMiddleware(ok_app)(http_scope("/x"), *FakeServer().channel())
    assert [sent.payload["scope"]["path"] for sent in started] == ["/x"]
    [report] = finished
    assert report.sender is SignalMiddleware
    assert report.payload["status_code"] == 200
