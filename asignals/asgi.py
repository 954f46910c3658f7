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
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from contextvars import ContextVar
from time import perf_counter
from traceback import format_exc
from typing import Any

import anyio

from . import _trace
from ._builtins import (
    app_started,
    app_stopping,
    got_request_exception,
    request_finished,
    request_started,
)
from ._checks import check_seconds
from ._dispatch import Loop, Plan, Responses, Watch, loop_for, prepare
from ._receivers import Entry

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send", "SignalMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("asignals")


# What an outer SignalMiddleware is reporting, while it runs: `[scope]` of one request (or
# lifespan), emptied when it ends. Kept in a context variable (not a scope key: the scope
# belongs to the application), so that nested or mounted apps wrapped again fire the
# signals once per request, not once per layer. Context variables are copied into every
# task started meanwhile, so the marker names its request: a scope that is not that one (or
# a shallow copy of it, which shares its `headers` list, read when a layer asks) is another
# request and is reported, as is any request once this one has ended, from a task it
# spawned or from an in-process client in its task. Emptied in a `finally`, so that a
# spawned task's context keeps no scope alive past the request. The object, not its id:
# `id()` makes an int per request. A list, not a class: this is on every request's path.
# A request does not put back the value it found unless that named a running request (an
# in-process request made from inside another): a context left holding an emptied marker
# means what the default None means, and resetting costs as much as setting.
_reporting: ContextVar[list[Any] | None] = ContextVar("asignals_reporting", default=None)
_reporting_lifespan: ContextVar[list[Any] | None] = ContextVar(
    "asignals_reporting_lifespan", default=None
)


def _covers(marker: list[Any] | None, scope: Scope) -> bool:
    """Whether *scope* is the request (or lifespan) that *marker* names, still running."""
    if not marker:
        return False
    reported = marker[0]
    if scope is reported:
        return True
    headers = scope.get("headers")
    return headers is not None and headers is reported.get("headers")


class _Exchange:
    """What one request's messages have told so far, written into its request_finished
    payload as they arrive.

    Created per request and held in a local of ``SignalMiddleware.__call__``, never on the
    middleware; the app gets its two methods as ``receive`` and ``send``. An object with
    slots rather than closures over locals: a closure's variables become cells, which
    ``__call__`` would create on every request, including the ones it only passes through.
    The payload is a copy of `_FINISHED_DEFAULTS` from the start (copying a dict costs a
    third of building one of seven items), so that the end of a request fills in only what
    the messages did not.
    """

    __slots__ = ("payload", "receive", "send")

    receive: Receive
    send: Send
    payload: dict[str, Any]

    async def observe_receive(self) -> Message:
        message = await self.receive()
        message_type = message["type"]
        if message_type == "http.disconnect":
            # Servers also answer receive() with http.disconnect once the response is
            # complete (Starlette's StreamingResponse listens for it): only one that comes
            # earlier means that the client went away. HTTP has no close code.
            payload = self.payload
            if not payload["response_complete"]:
                payload["disconnected"] = True
        elif message_type == "websocket.disconnect":
            payload = self.payload
            payload["disconnected"] = True
            if payload["close_code"] is None:
                payload["close_code"] = message.get("code", 1005)
        return message

    async def observe_send(self, message: Message) -> None:
        message_type = message["type"]
        try:
            await self.send(message)
        except OSError:
            # Servers raise an OSError (uvicorn: ClientDisconnected) for a message sent
            # after the client went away.
            self.payload["disconnected"] = True
            raise
        # Plain comparisons, most frequent first: cheaper than `in` a tuple of names.
        if message_type == "http.response.body":
            self.payload["response_complete"] = not message.get("more_body", False)
        elif message_type == "http.response.start":
            self.payload["status_code"] = message["status"]
        elif message_type == "websocket.close":
            payload = self.payload
            payload["close_code"] = message.get("code", 1000)
            payload["response_complete"] = True
        elif message_type == "http.response.pathsend":  # always the whole response
            self.payload["response_complete"] = True
        elif message_type == "http.response.zerocopysend":
            self.payload["response_complete"] = not message.get("more_body", False)
        elif message_type == "websocket.http.response.start":  # a websocket denial response
            self.payload["status_code"] = message["status"]
        elif message_type == "websocket.http.response.body":  # the end of a denial response
            self.payload["response_complete"] = not message.get("more_body", False)


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
            request was cancelled, or after a cancellation that cut one of them off (the
            ones after it still get the signal); then they are cut off, with a warning
            logged. Requests that were not interrupted do not bound them. A positive,
            finite number.

    Example:
        ```python
        skip = ["/health", re.compile(r"/metrics.*")]
        middleware = [Middleware(SignalMiddleware, exclude_paths=skip)]
        app = Starlette(routes=routes, middleware=middleware)
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
        check_seconds("SignalMiddleware(): finish_timeout", finish_timeout)
        self.app = app
        self.sender = type(self) if sender is None else sender
        self.websocket = websocket
        self.finish_timeout = finish_timeout
        self._exact_paths: frozenset[str] = frozenset()
        self._path_patterns: tuple[re.Pattern[str], ...] = ()
        for path in exclude_paths:
            if isinstance(path, re.Pattern):
                if not isinstance(path.pattern, str):
                    raise TypeError(
                        f"SignalMiddleware(): exclude_paths patterns must match str paths, "
                        f"got the bytes pattern {path!r}; compile it from a str: "
                        f"re.compile({path.pattern.decode(errors='replace')!r})"
                    )
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
        # Nothing connected to the request signals and no send hook on them (asignals.testing
        # capture, asignals.redis): has_listeners() would answer False for all three.
        if _started.idle and _finished.idle and _exception.idle and scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        scope_type = scope["type"]
        if scope_type not in self._request_types:
            if scope_type == "lifespan":
                await self._lifespan(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        outer = _reporting.get()
        if (outer and _covers(outer, scope)) or (  # an outer layer reports this request
            (self._exact_paths or self._path_patterns) and self._excludes(scope)
        ):
            await self.app(scope, receive, send)
            return
        # The plan request_started runs, while nothing can change it (else None: it is
        # prepared in the `try` below, where a send hook sees the send and a failing one
        # fails the request like a failing receiver), and whether anyone listens.
        sender = self.sender
        started_payload = {"scope": scope}
        plan = _started.plan
        if not (
            plan
            or (plan is None and request_started.has_listeners(sender))
            or request_finished.has_listeners(sender)
            or got_request_exception.has_listeners(sender)
        ):
            await self.app(scope, receive, send)
            return

        # The request is reported, here rather than in a method of its own: one coroutine
        # fewer per request. Everything about it lives in locals (and `exchange`, created
        # for it), never on self.
        exchange = _Exchange()
        exchange.receive, exchange.send = receive, send
        exchange.payload = payload = _FINISHED_DEFAULTS.copy()
        payload["scope"] = scope
        marker = [scope]
        token = _reporting.set(marker)
        started = perf_counter()
        interrupted = False  # by cancellation (or KeyboardInterrupt...), not an app error
        try:
            # request_started.send(sender, scope=scope)
            if plan is None:
                plan = prepare(request_started, sender, started_payload)
                if plan and _trace.tracer is not None:
                    await _traced_started(request_started, plan, sender, started_payload)
                    plan = ()
            if plan:  # a failure fails the request
                await _send_started(request_started, plan, sender, started_payload)
            try:
                await self.app(scope, exchange.observe_receive, exchange.observe_send)
            except Exception as exc:
                payload["exception"] = exc
                await got_request_exception.send_robust(sender, scope=scope, exception=exc)
                raise
        except Exception as exc:
            payload["exception"] = exc
            if (
                payload["status_code"] is None
                and scope_type == "http"
                and not payload["disconnected"]
            ):
                # No response started: the client gets a 500 from whatever catches this
                # (the server, or Starlette's ServerErrorMiddleware outside us when added
                # with app.add_middleware), so report the status it will see.
                payload["status_code"] = 500
            raise
        except BaseException:
            interrupted = True
            raise
        finally:
            marker.clear()  # for the tasks it started, this request is over
            if outer:  # this task is in another request still (one that made this one)
                _reporting.reset(token)
            payload["duration"] = perf_counter() - started
            # request_finished.send_robust(sender, **payload), taken apart so that the
            # receivers it has not reached yet are known when a cancellation cuts it short:
            # the loop walks an iterator of the plan.
            plan = _finished.plan
            traced = None
            if plan is None:
                plan = prepare(request_finished, sender, payload)
                if plan and _trace.tracer is not None:  # run inside its span, below
                    traced, plan = plan, ()
            remaining = iter(plan)
            try:
                if traced is not None:
                    await self._finish_traced(traced, sender, payload, scope, interrupted)
                elif interrupted:
                    await self._finish_shielded(remaining, sender, payload, scope)
                else:
                    try:
                        await _send_finished(request_finished, remaining, sender, payload)
                    except BaseException:
                        # Cancelled while a receiver awaited: that one is cut off, but the
                        # ones after it still hear that the request finished, as after a
                        # cancelled request. Only now is the shield paid for (about 6 us, a
                        # tenth of a whole request).
                        await self._finish_shielded(remaining, sender, payload, scope)
                        raise
            finally:
                # The app's exception (in the payload) holds this frame in its traceback:
                # emptied, so that no reference cycle keeps the request alive until the
                # cycle collector runs.
                payload.clear()

    def _excludes(self, scope: Scope) -> bool:
        """Whether *scope*'s path is one of exclude_paths."""
        path = scope.get("path", "")
        return path in self._exact_paths or any(p.fullmatch(path) for p in self._path_patterns)

    async def _finish_traced(
        self, plan: Plan, sender: Any, payload: dict[str, Any], scope: Scope, interrupted: bool
    ) -> None:
        """request_finished inside its span (`asignals._trace`), run as in `__call__`."""

        async def finish(plan: Plan) -> Responses:
            remaining = iter(plan)
            if interrupted:
                await self._finish_shielded(remaining, sender, payload, scope)
                return []
            try:
                return await _send_finished(request_finished, remaining, sender, payload)
            except BaseException:
                await self._finish_shielded(remaining, sender, payload, scope)
                raise

        await _trace.run(request_finished, "send_robust", plan, finish)

    async def _finish_shielded(
        self,
        remaining: Iterator[Entry],
        sender: Any,
        payload: dict[str, Any],
        scope: Scope,
    ) -> None:
        """Send request_finished to the *remaining* receivers despite a cancellation.

        Shielded so that a cancelled request still reports that it finished; bounded so
        that a slow receiver cannot hold it (or a shutdown) forever.
        """
        with anyio.move_on_after(self.finish_timeout, shield=True) as bound:
            await _send_finished(request_finished, remaining, sender, payload)
        if bound.cancelled_caught:
            logger.warning(
                "request_finished receivers did not finish within finish_timeout=%ss "
                "of an interrupted request to %s; they were cancelled",
                self.finish_timeout,
                scope.get("path"),
            )

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _covers(_reporting_lifespan.get(), scope):  # an outer layer sends them already
            await self.app(scope, receive, send)
            return
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

        marker = [scope]
        token = _reporting_lifespan.set(marker)
        try:
            await self.app(scope, observe_receive, observe_send)
        finally:
            marker.clear()
            _reporting_lifespan.reset(token)


# The payload of request_finished before the request has told anything; each request's
# starts as a copy (see `_Exchange`). Receivers get the items in this order.
_FINISHED_DEFAULTS: dict[str, Any] = {
    "scope": None,
    "status_code": None,
    "response_complete": False,
    "disconnected": False,
    "exception": None,
    "duration": 0.0,
    "close_code": None,
}
# The compiled dispatch loops of the two sends (the ones send() runs for these payloads),
# found once: looking them up per request (hashing the tuple of names) cost about as much
# as a whole direct call of a receiver.
_send_started: Loop = loop_for(("scope",))
_traced_started: Loop = _trace.traced_loop(_send_started, "send")
# Kept up to date by the signals: the quiet check and the plans, read per request.
_started, _finished = Watch(request_started), Watch(request_finished)
_exception = Watch(got_request_exception)
_send_finished: Loop = loop_for(tuple(_FINISHED_DEFAULTS), robust=True)
