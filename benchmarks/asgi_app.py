"""The applications :mod:`benchmarks.asgi` serves: one factory per variant.

uvicorn imports this module in a fresh process per variant
(``uvicorn --factory benchmarks.asgi_app:signals_async``), so receivers connected by one
variant's factory never leak into another's measurement.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from asignals import request_finished, request_started
from asignals.asgi import ASGIApp, Message, Receive, Scope, Send, SignalMiddleware


async def homepage(request: Request) -> Response:
    return PlainTextResponse("ok")


def _starlette() -> Starlette:
    return Starlette(routes=[Route("/", homepage)])


_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain")],
}
_BODY = {"type": "http.response.body", "body": b"ok", "more_body": False}


async def minimal_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The least an ASGI app can do: the same response, no framework.

    In process, a variant's overhead is the difference of two best times; around this app
    (about 1 us a request instead of Starlette's 12-20) that difference is not lost in the
    app's own noise. The instructions a middleware adds are the same around either app.
    """
    await send(_START)
    await send(_BODY)


def minimal() -> ASGIApp:
    return minimal_app


Inner = Callable[[], ASGIApp]
"""What a factory wraps: Starlette (served by uvicorn), or `minimal` (in process)."""


async def on_request(sender: Any, **kwargs: Any) -> None:
    """The coroutine receiver (and the BaseHTTPMiddleware hook): does nothing."""


def on_request_sync(sender: Any, **kwargs: Any) -> None:
    """The sync receiver: does nothing."""


class NoopMiddleware:
    """The cheapest pure ASGI middleware: one extra await per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class FloorMiddleware:
    """The floor: a hand-written pure ASGI middleware doing the signal variant's work.

    It calls the same receiver with the same payload that ``SignalMiddleware`` sends on
    ``request_started`` and ``request_finished``, directly, with nothing to look up: the
    least a middleware can do to report a request's start and end with its status.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status_code: int | None = None
        response_complete = False
        exception: BaseException | None = None

        async def observe_send(message: Message) -> None:
            nonlocal status_code, response_complete
            await send(message)
            if message["type"] == "http.response.start":
                status_code = message["status"]
            elif message["type"] == "http.response.body":
                response_complete = not message.get("more_body", False)

        started = time.perf_counter()
        await on_request(signal=request_started, sender=FloorMiddleware, scope=scope)
        try:
            await self.app(scope, receive, observe_send)
        except Exception as exc:
            exception = exc
            raise
        finally:
            await on_request(
                signal=request_finished,
                sender=FloorMiddleware,
                scope=scope,
                status_code=status_code,
                response_complete=response_complete,
                disconnected=False,
                exception=exception,
                duration=time.perf_counter() - started,
                close_code=None,
            )


class HooksMiddleware(BaseHTTPMiddleware):
    """The same two hooks as the signal variant, the way many apps write them today."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        await on_request(HooksMiddleware, scope=request.scope)
        response = await call_next(request)
        await on_request(HooksMiddleware, scope=request.scope, status_code=response.status_code)
        return response


def bare(inner: Inner = _starlette) -> ASGIApp:
    return inner()


def noop(inner: Inner = _starlette) -> ASGIApp:
    return NoopMiddleware(inner())


def floor(inner: Inner = _starlette) -> ASGIApp:
    return FloorMiddleware(inner())


def signals_none(inner: Inner = _starlette) -> ASGIApp:
    return SignalMiddleware(inner())


def signals_async(inner: Inner = _starlette) -> ASGIApp:
    request_started.connect(on_request)
    request_finished.connect(on_request)
    return SignalMiddleware(inner())


def signals_sync(inner: Inner = _starlette) -> ASGIApp:
    request_started.connect(on_request_sync)
    request_finished.connect(on_request_sync)
    return SignalMiddleware(inner())


def basehttp(inner: Inner = _starlette) -> ASGIApp:
    if inner is _starlette:
        app = _starlette()
        app.add_middleware(HooksMiddleware)
        return app
    return HooksMiddleware(inner())


FACTORIES: dict[str, Callable[..., ASGIApp]] = {
    "bare": bare,
    "noop": noop,
    "floor": floor,
    "signals_none": signals_none,
    "signals_async": signals_async,
    "signals_sync": signals_sync,
    "basehttp": basehttp,
}


def disconnect_all() -> None:
    """Undo what the factories connected (in-process runs build every variant in turn)."""
    for signal in (request_started, request_finished):
        signal.disconnect(on_request)
        signal.disconnect(on_request_sync)
