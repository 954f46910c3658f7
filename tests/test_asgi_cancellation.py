"""SignalMiddleware under cancellation and unusual traffic: request_finished reaches every
receiver when a cancellation lands during the finish, the "already reported" marker names
its own request, pathsend and websocket denial responses are complete, nested lifespans
report once, and arguments that would only fail on a request are refused up front."""

from __future__ import annotations

import gc
import logging
import math
import re
import weakref
from pathlib import Path
from typing import Any

import anyio
import pytest
from asgi_apps import recording
from starlette.responses import FileResponse
from test_asgi_middleware import REQUEST_SIGNALS, FakeServer, http_scope, ok_app, websocket_scope

from asignals import app_started, app_stopping, request_finished, request_started
from asignals.asgi import Receive, Scope, Send, SignalMiddleware
from asignals.testing import connected_to

pytestmark = pytest.mark.anyio


# -- request_finished when the cancellation lands during the finish ---------------------------


async def test_cancellation_during_the_finish_still_reaches_later_receivers() -> None:
    first_awaiting = anyio.Event()
    heard: list[str] = []

    async def first(**kwargs: Any) -> None:
        heard.append("first")
        first_awaiting.set()
        await anyio.sleep(30)  # the cancellation lands here

    async def second(**kwargs: Any) -> None:
        await anyio.sleep(0.01)  # awaits too: delivered shielded, not just called
        heard.append("second")

    def third(**kwargs: Any) -> None:
        heard.append("third")

    with (
        connected_to(first, request_finished),
        connected_to(second, request_finished),
        connected_to(third, request_finished),
    ):
        async with anyio.create_task_group() as group:
            group.start_soon(SignalMiddleware(ok_app), http_scope(), *FakeServer().channel())
            with anyio.fail_after(5):
                await first_awaiting.wait()
            group.cancel_scope.cancel()
    assert heard == ["first", "second", "third"]


async def test_cancellation_during_the_finish_is_bounded_by_finish_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first_awaiting = anyio.Event()
    reached_end: list[str] = []

    async def first(**kwargs: Any) -> None:
        first_awaiting.set()
        await anyio.sleep(30)

    async def too_slow(**kwargs: Any) -> None:
        await anyio.sleep(30)
        reached_end.append("too_slow")

    with connected_to(first, request_finished), connected_to(too_slow, request_finished):
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(
                    SignalMiddleware(ok_app, finish_timeout=0.05),
                    http_scope(),
                    *FakeServer().channel(),
                )
                await first_awaiting.wait()
                group.cancel_scope.cancel()
    assert reached_end == []
    assert "did not finish within finish_timeout=0.05s" in caplog.text


# -- the "already reported" marker names its request --------------------------------------------


async def test_request_from_a_task_spawned_during_a_request_is_reported() -> None:
    later = anyio.Event()
    wrapped = SignalMiddleware(ok_app)

    async def spawned_request() -> None:
        await later.wait()  # the original request has ended by now
        await wrapped(http_scope("/spawned"), *FakeServer().channel())

    with recording(request_started) as recorder:
        async with anyio.create_task_group() as group:

            async def spawning_app(scope: Scope, receive: Receive, send: Send) -> None:
                group.start_soon(spawned_request)  # inherits this request's context
                await ok_app(scope, receive, send)

            await SignalMiddleware(spawning_app)(http_scope("/original"), *FakeServer().channel())
            later.set()
    assert [call.payload["scope"]["path"] for call in recorder.calls] == ["/original", "/spawned"]


class WeakScope(dict[str, Any]):
    """A scope that can be weakly referenced (a plain dict cannot)."""


async def test_a_task_that_outlives_its_request_does_not_keep_the_scope_alive() -> None:
    """The marker in the context a spawned task inherits holds the request's scope only
    while the request runs: it is emptied when the request ends."""

    def started(**kwargs: Any) -> None:
        pass

    release = anyio.Event()
    with connected_to(started, request_started):
        async with anyio.create_task_group() as group:

            async def spawning_app(scope: Scope, receive: Receive, send: Send) -> None:
                group.start_soon(release.wait)  # its context: a copy of this request's
                await ok_app(scope, receive, send)

            scope = WeakScope(http_scope())
            alive = weakref.ref(scope)
            await SignalMiddleware(spawning_app)(scope, *FakeServer().channel())
            del scope
            gc.collect()
            assert alive() is None, "the spawned task's context keeps the scope alive"
            release.set()


async def test_concurrent_request_from_a_spawned_task_is_reported() -> None:
    wrapped = SignalMiddleware(ok_app)
    with recording(request_started) as recorder:

        async def spawning_app(scope: Scope, receive: Receive, send: Send) -> None:
            async with anyio.create_task_group() as group:  # while this request runs
                group.start_soon(wrapped, http_scope("/spawned"), *FakeServer().channel())
            await ok_app(scope, receive, send)

        await SignalMiddleware(spawning_app)(http_scope("/original"), *FakeServer().channel())
    paths = sorted(call.payload["scope"]["path"] for call in recorder.calls)
    assert paths == ["/original", "/spawned"]


async def test_in_process_request_to_another_app_is_reported() -> None:
    class Other:
        """The other app's sender."""

    other_app = SignalMiddleware(ok_app, sender=Other)

    async def calling_app(scope: Scope, receive: Receive, send: Send) -> None:
        # As an in-process HTTP client (httpx's ASGITransport) does: a new scope, same task.
        await other_app(http_scope("/other"), *FakeServer().channel())
        await ok_app(scope, receive, send)

    with recording(request_started) as recorder:
        await SignalMiddleware(calling_app)(http_scope("/outer"), *FakeServer().channel())
    assert [(call.sender, call.payload["scope"]["path"]) for call in recorder.calls] == [
        (SignalMiddleware, "/outer"),
        (Other, "/other"),
    ]


async def test_a_nested_layer_after_an_in_process_request_still_sends_once() -> None:
    """A request made from inside another, in the same task, puts the outer request's marker
    back when it ends: a layer the outer request reaches afterwards still sees it reported."""

    class Other:
        """The other app's sender."""

    other_app = SignalMiddleware(ok_app, sender=Other)
    inner_layer = SignalMiddleware(ok_app)

    async def calling_app(scope: Scope, receive: Receive, send: Send) -> None:
        await other_app(http_scope("/other"), *FakeServer().channel())
        await inner_layer(scope, receive, send)

    with recording(*REQUEST_SIGNALS) as recorder:
        await SignalMiddleware(calling_app)(http_scope("/outer"), *FakeServer().channel())
        await inner_layer(http_scope("/after"), *FakeServer().channel())  # the same task
    assert [(call.signal.label, call.payload["scope"]["path"]) for call in recorder.calls] == [
        ("request_started", "/outer"),
        ("request_started", "/other"),
        ("request_finished", "/other"),
        ("request_finished", "/outer"),
        ("request_started", "/after"),
        ("request_finished", "/after"),
    ]


async def test_a_copy_made_after_the_app_replaced_the_headers_still_sends_once() -> None:
    """The headers a nested layer compares are the outer scope's when it asks, not when the
    request started: a middleware that rewrites them before mounting a copy is one request."""

    async def rewrites_then_copies(scope: Scope, receive: Receive, send: Send) -> None:
        scope["headers"] = [*scope["headers"], (b"x-forwarded-for", b"10.0.0.1")]
        await SignalMiddleware(ok_app)(dict(scope, root_path="/sub"), receive, send)

    with recording(*REQUEST_SIGNALS) as recorder:
        await SignalMiddleware(rewrites_then_copies)(http_scope(), *FakeServer().channel())
    assert recorder.names() == ["request_started", "request_finished"]


async def test_nested_layers_with_a_copied_scope_still_send_once() -> None:
    async def copies_the_scope(scope: Scope, receive: Receive, send: Send) -> None:
        await SignalMiddleware(ok_app)(dict(scope, root_path="/sub"), receive, send)

    with recording(*REQUEST_SIGNALS) as recorder:
        await SignalMiddleware(copies_the_scope)(http_scope(), *FakeServer().channel())
    assert recorder.names() == ["request_started", "request_finished"]


# -- complete responses ---------------------------------------------------------------------------


async def test_file_response_sent_with_pathsend_is_complete(tmp_path: Path) -> None:
    document = tmp_path / "report.txt"
    document.write_text("the report")
    scope = http_scope("/report")
    scope["extensions"] = {"http.response.pathsend": {}}
    server = FakeServer(then={"type": "http.disconnect"})  # what a server says afterwards

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await FileResponse(document)(scope, receive, send)
        await receive()  # the server's http.disconnect after the response: no disconnect

    with recording(request_finished) as recorder:
        await SignalMiddleware(app)(scope, server.receive, server.send)
    assert [m["type"] for m in server.sent] == ["http.response.start", "http.response.pathsend"]
    (call,) = recorder.of(request_finished)
    assert call.payload["response_complete"] is True
    assert call.payload["disconnected"] is False
    assert call.payload["status_code"] == 200


@pytest.mark.parametrize("more_body", [False, True])
async def test_zerocopysend_completes_the_response_unless_more_follows(more_body: bool) -> None:
    scope = http_scope("/video")
    scope["extensions"] = {"http.response.zerocopysend": {}}
    server = FakeServer()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 206, "headers": []})
        await send({"type": "http.response.zerocopysend", "file": 3, "more_body": more_body})

    with recording(request_finished) as recorder:
        await SignalMiddleware(app)(scope, server.receive, server.send)
    (call,) = recorder.of(request_finished)
    assert call.payload["response_complete"] is not more_body
    assert call.payload["status_code"] == 206


async def test_websocket_denial_response_is_complete(tmp_path: Path) -> None:
    document = tmp_path / "denied.txt"
    document.write_text("go away")
    server = FakeServer([{"type": "websocket.connect"}])

    async def denies(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        # Starlette turns a response to a websocket into the denial response extension.
        await FileResponse(document, status_code=403)(scope, receive, send)

    with recording(request_finished) as recorder:
        await SignalMiddleware(denies, websocket=True)(
            websocket_scope(), server.receive, server.send
        )
    assert [m["type"] for m in server.sent] == [
        "websocket.http.response.start",
        "websocket.http.response.body",
    ]
    (call,) = recorder.of(request_finished)
    assert call.payload["status_code"] == 403
    assert call.payload["response_complete"] is True


# -- nested lifespans -------------------------------------------------------------------------


async def test_nested_middleware_sends_lifespan_signals_once() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})
        assert (await receive())["type"] == "lifespan.shutdown"
        await send({"type": "lifespan.shutdown.complete"})

    server = FakeServer([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    nested = SignalMiddleware(SignalMiddleware(SignalMiddleware(app)))
    with recording(app_started, app_stopping) as recorder:
        await nested({"type": "lifespan", "asgi": {"version": "3.0"}}, server.receive, server.send)
    assert recorder.names() == ["app_started", "app_stopping"]
    assert [m["type"] for m in server.sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


# -- no reference cycle through the app's exception -------------------------------------------


class Boom(Exception):
    def __init__(self, payload: object) -> None:
        super().__init__("boom")
        self.payload = payload


class Payload:
    pass


async def test_app_exception_does_not_keep_the_request_alive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logging.getLogger("asignals"), "disabled", True)

    async def fails(scope: Scope, receive: Receive, send: Send) -> None:
        raise Boom(scope["payload"])

    def finished(**kwargs: Any) -> None:
        pass

    with connected_to(finished, request_finished):
        gc.collect()
        gc.disable()
        try:
            payload = Payload()
            alive = weakref.ref(payload)
            scope = http_scope()
            scope["payload"] = payload
            del payload
            caught: BaseException | None = None
            try:
                await SignalMiddleware(fails)(scope, *FakeServer().channel())
            except Boom as exc:
                caught = exc
            assert isinstance(caught, Boom)
            del caught, scope
            assert alive() is None, "a reference cycle keeps the request alive"
        finally:
            gc.enable()


# -- arguments refused up front ---------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param({"finish_timeout": 10**400}, ValueError, "finite", id="timeout-huge-int"),
        pytest.param({"finish_timeout": math.inf}, ValueError, "finite", id="timeout-inf"),
        pytest.param(
            {"exclude_paths": [re.compile(b"/health")]},
            TypeError,
            r"compile it from a str: re\.compile\('/health'\)",
            id="bytes-pattern",
        ),
    ],
)
async def test_arguments_that_would_fail_on_a_request(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        SignalMiddleware(ok_app, **kwargs)


async def test_request_started_still_sent_for_each_request_after_a_nested_one() -> None:
    """The marker is reset when a request ends: the next request in the same task counts."""
    nested = SignalMiddleware(SignalMiddleware(ok_app))
    with recording(request_started) as recorder:
        scope = http_scope("/same-object")
        await nested(scope, *FakeServer().channel())
        await nested(scope, *FakeServer().channel())  # the same scope object, a new request
    assert len(recorder.of(request_started)) == 2
