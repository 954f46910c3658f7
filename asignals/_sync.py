"""Sends from sync code: ``send_sync`` and ``send_robust_sync``.

Where the receivers run depends on the calling thread, checked in this order:

1. The thread runs an event loop (sync code called from a coroutine or a callback): an
   all-sync plan is called right here; anything that must be awaited raises
   ``RuntimeError``, because waiting would block that loop (or deadlock it).
2. The thread is an anyio worker thread (``anyio.to_thread.run_sync``, Starlette's and
   FastAPI's threadpool): the send runs on the event loop that started the thread, as
   an awaited send would, and the thread blocks until it is done.
3. No event loop anywhere (a script): an all-sync plan is called right here, with no
   event loop at all; otherwise the send runs to completion on an asyncio event loop
   kept for this thread (creating one per send costs about ten times as much, and a
   kept loop lets receivers keep loop-bound clients between sends).

"Called right here" drives the dispatch loop's coroutine by hand: with only sync
receivers it finishes without ever suspending, so the one dispatch loop serves sync
callers too.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import threading
import weakref
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import anyio.from_thread

from . import _trace
from ._dispatch import Caller, caller, inline, prepare, run_inline
from ._loops import loop_for
from ._plans import Plan, Responses
from ._receivers import SYNC, describe

if TYPE_CHECKING:
    from ._signal import AsyncSignal


def run(
    signal: AsyncSignal[...],
    robust: bool,
    args: tuple[Any, ...],
    payload: dict[str, Any],
    traced: Plan | None = None,
) -> Responses:
    """Run one ``send`` (or ``send_robust``) of *signal* to completion from sync code.

    While sends are traced (`asignals._trace`), the prepared plan is run by this function
    again, inside the send's span, as *traced*.
    """
    method = "send_robust" if robust else "send"
    sender = signal._fix_send_arguments(args, payload)  # bad arguments fail in the caller
    where = caller()
    if where is Caller.WORKER_THREAD:
        # Traced: the loop's side continues this thread's trace (the request's).
        carrier = None if _trace.tracer is None else _trace.capture()
        return anyio.from_thread.run(_send_on_loop, signal, robust, sender, payload, carrier)
    if traced is None:
        plan = prepare(signal, sender, payload)
        if not plan:
            return []
        if _trace.tracer is not None:
            # (No closure here: its cells would slow every untraced send down.)
            again = functools.partial(run, signal, robust, (sender,), payload)
            return _trace.run_sync(signal, f"{method}_sync", plan, again)
    else:
        plan = traced
    if inline(plan):
        return run_inline(signal, plan, sender, payload, robust)
    if where is Caller.EVENT_LOOP:
        waits = next(
            (r for ref, call in plan if call is not SYNC and (r := ref()) is not None), None
        )
        if waits is None:  # only dead ones (not pruned yet) must be awaited: none to call
            return run_inline(signal, plan, sender, payload, robust)
        raise RuntimeError(
            f"{signal!r}.{method}_sync() was called on a thread that is running an "
            f"event loop, and receiver {describe(waits)} must be awaited there; "
            f"use `await {signal.label}.{method}(...)` instead"
        )
    coroutine = loop_for(tuple(payload), type(plan), robust)(signal, plan, sender, payload)
    names = signal._coroutine_names or signal._name_sends()
    coroutine.__qualname__ = f"{names[robust]}_sync"  # type: ignore[attr-defined]
    return _private_loop().run(coroutine)


async def _send_on_loop(
    signal: AsyncSignal[...],
    robust: bool,
    sender: Any,
    payload: dict[str, Any],
    carrier: _trace.Carrier | None = None,
) -> Responses:
    # The plan is looked up again on the loop: connections may have changed meanwhile,
    # and an awaited send made now would see the same.
    if carrier is not None:
        return await _traced_on_loop(signal, robust, sender, payload, carrier)
    if robust:
        return await signal.send_robust(sender, **payload)
    return await signal.send(sender, **payload)


async def _traced_on_loop(
    signal: AsyncSignal[...],
    robust: bool,
    sender: Any,
    payload: dict[str, Any],
    carrier: _trace.Carrier,
) -> Responses:
    """`_send_on_loop` while traced: one ``send_sync`` span, in the worker thread's trace."""
    with _trace.continued(carrier):
        plan = prepare(signal, sender, payload)
        if not plan:
            return []
        loop = loop_for(tuple(payload), type(plan), robust)
        mode = "send_robust_sync" if robust else "send_sync"
        return await _trace.run(
            signal, mode, plan, lambda plan: loop(signal, plan, sender, payload)
        )


def no_event_loop(signal: AsyncSignal[...], method: str) -> RuntimeError:
    """The error of an awaitable send (*method*: ``send``, ``send_robust``, ``gather`` or
    ``gather_robust``) called in a thread that runs no event loop.

    That is Django's habit, ``signal.send(...)`` from sync code: the call would return a
    coroutine that nobody awaits, so no receiver would run, and the only sign of it would
    be a ``RuntimeWarning`` much later, when the coroutine is collected.
    """
    instead = "send_robust_sync" if method.endswith("_robust") else "send_sync"
    return RuntimeError(
        f"{signal!r}.{method}() was called with no event loop running in this thread; "
        f"call {signal.label}.{instead}(...) from sync code, or "
        f"`await {signal.label}.{method}(...)` from a coroutine"
    )


class _PrivateLoop:
    """An asyncio event loop owned by one thread, for sends from sync code there."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        # Closed when the thread's locals go (the thread ended) or at exit, whichever is
        # first; the weak reference keeps atexit from holding loops of finished threads.
        atexit.register(_close_at_exit, weakref.ref(self))

    def run(self, coroutine: Coroutine[Any, Any, Responses]) -> Responses:
        task = self._loop.create_task(coroutine)
        try:
            return self._loop.run_until_complete(task)
        except BaseException:
            # KeyboardInterrupt and the like leave the task unfinished: cancel it and let
            # it clean up before the exception goes on, so the loop stays usable.
            if not task.done():
                task.cancel()
                # The first exception is the one to raise; the task's own ending is not.
                with contextlib.suppress(BaseException):
                    self._loop.run_until_complete(task)
            raise

    def close(self) -> None:
        """Finish the loop's async generators and close it (at exit, from the main thread)."""
        if not self._loop.is_closed():
            try:
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            finally:
                self._loop.close()

    def __del__(self) -> None:
        # The thread has ended. The collector may run this anywhere, even inside another
        # running loop, where this loop cannot run again: only close it.
        if not self._loop.is_closed():
            self._loop.close()


def _close_at_exit(ref: weakref.ref[_PrivateLoop]) -> None:
    loop = ref()
    if loop is not None:
        loop.close()


_threads = threading.local()


def _private_loop() -> _PrivateLoop:
    loop: _PrivateLoop | None = getattr(_threads, "loop", None)
    if loop is None:
        loop = _threads.loop = _PrivateLoop()
    return loop
