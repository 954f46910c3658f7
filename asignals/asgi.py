"""Request lifecycle signals for any ASGI application, as one pure ASGI middleware.

Example:
    ```python
    from fastapi import FastAPI
    from asignals.asgi import SignalMiddleware

    app = SignalMiddleware(FastAPI())
    ```
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from contextvars import ContextVar
from traceback import format_exc
from typing import Any

import anyio

from ._builtins import (
    app_started,
    app_stopping,
    got_request_exception,
    request_finished,
    request_started,
)

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send", "SignalMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("asignals")

# Set while a request runs through an outer SignalMiddleware, so that nested or mounted
# apps wrapped again fire the signals once per request, not once per layer. A context
# variable, not a scope key: the scope belongs to the application.
_in_request: ContextVar[bool] = ContextVar("asignals_in_request", default=False)


class SignalMiddleware:
    """Send the request lifecycle signals around an ASGI application.

    For each HTTP request (and, with ``websocket=True``, each websocket connection):

    * ``request_started`` (``scope``) is awaited in the request's own task before the app
      runs; a receiver that raises fails the request.
    * ``got_request_exception`` (``scope``, ``exception``) is sent robustly when an
      ``Exception`` escapes; the exception is then re-raised unchanged.
    * ``request_finished`` is sent robustly, exactly once, after the app has returned, also
      after an error, a client disconnect or cancellation (then shielded from the
      cancellation, for at most *finish_timeout* seconds). Payload: ``scope``,
      ``status_code`` (``500`` when an ``Exception`` escaped before a response started:
      what the server or Starlette's error middleware then sends), ``response_complete``,
      ``disconnected``, ``exception``, ``duration``
      and ``close_code`` (websockets; ``None`` for HTTP).

    Lifespan messages pass through untouched; ``app_started`` is awaited when the app
    reports startup complete (before the server hears of it, so a receiver that raises fails
    the startup) and ``app_stopping`` is sent robustly when shutdown begins.

    Args:
        app: The ASGI application to wrap.
        sender: The sender of every signal (default: the middleware class).
        websocket: Also send the request signals for websocket connections.
        exclude_paths: Paths that send no request signals: strings match exactly,
            compiled regular expressions with ``fullmatch``.
        finish_timeout: Seconds that ``request_finished`` receivers may take after the
            request was cancelled (they are then cut off, with a warning logged). Requests
            that were not interrupted do not bound them.

    Example:
        ```python
        app = Starlette(routes=routes, middleware=[
            Middleware(SignalMiddleware, exclude_paths=["/health", re.compile(r"/metrics.*")]),
        ])
        ```
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        sender: Any = None,
        websocket: bool = False,
        exclude_paths: Iterable[str | re.Pattern[str]] = (),
        finish_timeout: float = 5.0,
    ) -> None:
        if not callable(app):
            raise TypeError(f"SignalMiddleware() needs an ASGI application, got {app!r}")
        if isinstance(exclude_paths, str):
            raise TypeError(
                f"SignalMiddleware(): exclude_paths takes a list of paths, got the string "
                f"{exclude_paths!r}; write exclude_paths=[{exclude_paths!r}]"
            )
        if isinstance(finish_timeout, bool) or not isinstance(finish_timeout, int | float):
            raise TypeError(
                f"SignalMiddleware(): finish_timeout must be a number of seconds, "
                f"got {finish_timeout!r}"
            )
        if not finish_timeout > 0:
            raise ValueError(
                f"SignalMiddleware(): finish_timeout must be a positive number of seconds, "
                f"got {finish_timeout!r}"
            )
        self.app = app
        self.sender = type(self) if sender is None else sender
        self.websocket = websocket
        self.finish_timeout = finish_timeout
        self._exact_paths: frozenset[str] = frozenset()
        self._path_patterns: tuple[re.Pattern[str], ...] = ()
        for path in exclude_paths:
            if isinstance(path, re.Pattern):
                self._path_patterns += (path,)
            elif isinstance(path, str):
                self._exact_paths |= {path}
            else:
                raise TypeError(
                    f"SignalMiddleware(): exclude_paths items must be strings or compiled "
                    f"regular expressions, got {path!r}"
                )
        self._request_types = frozenset({"http", "websocket"} if websocket else {"http"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type in self._request_types:
            if self._wants(scope):
                await self._request(scope, receive, send)
            else:
                await self.app(scope, receive, send)
        elif scope_type == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _wants(self, scope: Scope) -> bool:
        """Whether this request sends signals: some receiver listens, not nested, not excluded."""
        sender = self.sender
        if (
            not (
                request_started.has_listeners(sender)
                or request_finished.has_listeners(sender)
                or got_request_exception.has_listeners(sender)
            )
            or _in_request.get()
        ):
            return False
        if self._exact_paths or self._path_patterns:
            path = scope.get("path", "")
            if path in self._exact_paths or any(p.fullmatch(path) for p in self._path_patterns):
                return False
        return True

    async def _request(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Everything about this request lives in these locals, never on self.
        status_code: int | None = None
        close_code: int | None = None
        response_complete = False
        disconnected = False
        exception: BaseException | None = None

        async def observe_receive() -> Message:
            nonlocal disconnected, close_code
            message = await receive()
            message_type = message["type"]
            if message_type == "http.disconnect":
                # Servers also answer receive() with http.disconnect once the response is
                # complete (Starlette's StreamingResponse listens for it): only one that
                # comes earlier means that the client went away. HTTP has no close code.
                if not response_complete:
                    disconnected = True
            elif message_type == "websocket.disconnect":
                disconnected = True
                if close_code is None:
                    close_code = message.get("code", 1005)
            return message

        async def observe_send(message: Message) -> None:
            nonlocal status_code, response_complete, disconnected, close_code
            message_type = message["type"]
            try:
                await send(message)
            except OSError:
                # Servers raise an OSError (uvicorn: ClientDisconnected) for a message sent
                # after the client went away.
                disconnected = True
                raise
            if message_type in ("http.response.start", "websocket.http.response.start"):
                status_code = message["status"]
            elif message_type == "http.response.body":
                response_complete = not message.get("more_body", False)
            elif message_type == "websocket.close":
                close_code = message.get("code", 1000)
                response_complete = True

        sender = self.sender
        scope_type = scope["type"]
        token = _in_request.set(True)
        started = time.perf_counter()
        interrupted = False  # by cancellation (or KeyboardInterrupt...), not an app error
        try:
            await request_started.send(sender, scope=scope)  # a failure fails the request
            try:
                await self.app(scope, observe_receive, observe_send)
            except Exception as exc:
                exception = exc
                await got_request_exception.send_robust(sender, scope=scope, exception=exc)
                raise
        except Exception as exc:
            exception = exc
            if status_code is None and scope_type == "http" and not disconnected:
                # No response started: the client gets a 500 from whatever catches this
                # (the server, or Starlette's ServerErrorMiddleware outside us when added
                # with app.add_middleware), so report the status it will see.
                status_code = 500
            raise
        except BaseException:
            interrupted = True
            raise
        finally:
            _in_request.reset(token)
            finished = request_finished.send_robust(
                sender,
                scope=scope,
                status_code=status_code,
                response_complete=response_complete,
                disconnected=disconnected,
                exception=exception,
                duration=time.perf_counter() - started,
                close_code=close_code,
            )
            if interrupted:
                # Shielded so that a cancelled request still reports that it finished;
                # bounded so that a slow receiver cannot hold it (or a shutdown) forever.
                # Only here: a shielded scope costs about 6 us, a tenth of a whole request.
                with anyio.move_on_after(self.finish_timeout, shield=True) as bound:
                    await finished
                if bound.cancelled_caught:
                    logger.warning(
                        "request_finished receivers did not finish within finish_timeout=%ss "
                        "of an interrupted request to %s; they were cancelled",
                        self.finish_timeout,
                        scope.get("path"),
                    )
            else:
                await finished

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        sender = self.sender

        async def observe_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await app_stopping.send_robust(sender, scope=scope)
            return message

        startup_failed = False

        async def observe_send(message: Message) -> None:
            nonlocal startup_failed
            if message["type"] == "lifespan.startup.complete":
                # Before the server hears of it: receivers open what requests will use.
                try:
                    await app_started.send(sender, scope=scope)
                except Exception:
                    # Tell the server ourselves: not every app turns an exception raised by
                    # send() into lifespan.startup.failed, as Starlette does.
                    startup_failed = True
                    await send({"type": "lifespan.startup.failed", "message": format_exc()})
                    raise
            elif message["type"] == "lifespan.startup.failed" and startup_failed:
                return  # the server has been told already, and accepts it once
            await send(message)

        await self.app(scope, observe_receive, observe_send)
