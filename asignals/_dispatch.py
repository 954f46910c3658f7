"""The dispatch API: how a send runs, whoever makes it.

Every send goes through these few functions, in two steps:

1. **prepare**: `prepare(signal, sender, payload)` returns the *plan* of the send, the
   receivers it calls, in order: the sender's plan, with the send hooks applied (the
   testing helpers, the Redis bridge) and the send noted as taken (for the warning about
   weak receivers that never ran). A plan is a snapshot: connecting or disconnecting later
   changes later sends only.
2. **run** the plan, one way per mode: `loop_for(...)` gives the compiled loop that
   ``send`` (robust or not) awaits, `inline_for(...)` the one that runs a plan of sync
   receivers right here, without any event loop, as a plain call (`run_inline` looks it
   up and calls it), `each_for(...)` the one that makes many robust sends of such a plan
   in turn (a commit's model signals), and gather runs a plan concurrently
   (`asignals._gather`).

`AsyncSignal.send` and ``send_robust`` take a shortcut through the same two steps: a
signal keeps its last prepared send (`Connections._ready`) for as long as it is valid and
reuses it when a payload of the same length comes (the loop checks the names).

Integrations (`asignals.asgi`, `asignals.sqlalchemy`, `asignals.redis`) use only this
module, `asignals._hooks` and public API; none reads a signal's private attributes.
``docs/design.md`` states the contract.
"""

from __future__ import annotations

import asyncio
import sys
from enum import Enum
from typing import TYPE_CHECKING, Any

import anyio.from_thread

from . import _trace
from ._loops import EachLoop, InlineLoop, Loop, each_for, inline_for, loop_for
from ._plans import Plan, Responses, inline

if TYPE_CHECKING:
    from ._signal import AsyncSignal

__all__ = [
    "Caller",
    "EachLoop",
    "InlineLoop",
    "Loop",
    "Plan",
    "Responses",
    "Watch",
    "caller",
    "check_receiver",
    "each_for",
    "inline",
    "inline_for",
    "is_hooked",
    "is_idle",
    "loop_for",
    "named",
    "plan_for",
    "prepare",
    "run_inline",
    "traced",
    "version",
]


def named(name: str) -> list[AsyncSignal[...]]:
    """The live signals created with *name* (a relay finds a stored event's signal so;
    more than one means the name is ambiguous in this process)."""
    from ._signal import _named

    found = _named.get(name)
    return list(found) if found is not None else []


def prepare(signal: AsyncSignal[...], sender: Any, payload: dict[str, Any]) -> Plan:
    """The plan a send of *payload* from *sender* runs, the send hooks applied; the send
    that asks is about to run it."""
    any_plan, sender_plans = signal._plans
    plan = signal._plan_for(sender) if sender_plans else any_plan
    if signal._hook is not None:
        plan = signal._hook(sender, payload, plan)
    if signal._unsent and plan:  # (seldom listed: asked first)
        signal._sending()
    return plan


def plan_for(signal: AsyncSignal[...], sender: Any) -> Plan:
    """The receivers a send from *sender* would call, before any send hook: to look up once
    for many sends (a commit's), then `prepare` each only while `is_hooked`."""
    any_plan, sender_plans = signal._plans
    plan = signal._plan_for(sender) if sender_plans else any_plan
    if signal._unsent and plan:
        signal._sending()
    return plan


def is_hooked(signal: AsyncSignal[...]) -> bool:
    """Whether a send hook (a test's ``capture()``, a bridge) sees each send of *signal*."""
    return signal._hook is not None


def is_idle(signal: AsyncSignal[...]) -> bool:
    """Nothing is connected to *signal* (for any sender) and no send hook is installed on
    it: a send would call nothing and be seen by nobody, so its work can be skipped."""
    return not signal._connections and signal._hook is None


class Watch:
    """What a send of *signal* from a sender without receivers of its own would need, as
    attributes kept up to date by the signal itself (on every connect, disconnect, death,
    send hook and first send): for a caller that sends on every request, where a function
    call would cost more than the lookup it makes.

    * ``idle``: `is_idle`;
    * ``plan``: the plan `prepare` would return for any sender, while nothing can change
      it (no sender has receivers of its own, no send hook, no weak receiver waits for its
      first send) and sends are not traced; else ``None``: call `prepare`, and run the
      plan with `traced` when it says so.
    """

    __slots__ = ("__weakref__", "idle", "plan", "signal")

    def __init__(self, signal: AsyncSignal[...]) -> None:
        self.signal = signal
        self.idle = True
        self.plan: Plan | None = None
        signal._watchers.add(self)  # weakly: a watch nobody keeps is dropped
        self.update()

    def update(self) -> None:
        """Read the signal again (it calls this after every change)."""
        signal = self.signal
        for _ in range(_MAX_RETRIES):
            version = signal._version
            any_plan, sender_plans = signal._plans
            hook = signal._hook
            self.idle = not signal._connections and hook is None
            self.plan = (
                None
                if sender_plans or hook is not None or signal._unsent or _trace.tracer is not None
                else any_plan
            )
            if signal._version == version:  # else changed meanwhile, in another thread
                return
        self.plan = None  # pragma: no cover - changing without pause: let prepare() answer


_MAX_RETRIES = 100


def version(signal: AsyncSignal[...]) -> int:
    """A number that changes whenever the receivers of some sender may have changed (a
    connect, a disconnect, a death, a send hook): for caches of what plans answer."""
    return signal._version


def check_receiver(
    signal: AsyncSignal[...],
    receiver: Any,
    *,
    to_thread: bool = False,
    timeout: float | None = None,
) -> bool:
    """Check *receiver* as ``signal.connect()`` would, without connecting it; return
    whether it is a coroutine receiver. Raises what ``connect()`` raises."""
    is_async = signal._check_receiver(receiver, to_thread, timeout)
    signal._accept(receiver, is_async, to_thread)
    return is_async


def run_inline(
    signal: AsyncSignal[...],
    plan: Plan,
    sender: Any,
    payload: dict[str, Any],
    robust: bool,
) -> Responses:
    """Run a plan of sync receivers only (`inline`) right here, in any thread, with or
    without an event loop (a caller that runs many sends of one payload's names looks up
    `inline_for` once and calls it)."""
    return inline_for(tuple(payload), robust)(signal, plan, sender, payload)


def traced() -> bool:
    """Whether sends are traced (`asignals._trace`): then a caller that prepared a send
    runs it through `asignals._trace.run` (or ``run_sync``) with its mode's name."""
    return _trace.tracer is not None


class Caller(Enum):
    """Where a send from sync code is made, which decides where its receivers run."""

    EVENT_LOOP = "event loop"
    """The thread runs an event loop (sync code called by a coroutine or a callback):
    sync receivers run here; anything that must be awaited cannot (waiting would block the
    loop)."""
    WORKER_THREAD = "worker thread"
    """An anyio worker thread (``to_thread.run_sync``, Starlette's and FastAPI's
    threadpool): the send runs on the event loop that started the thread, which waits."""
    NO_LOOP = "no event loop"
    """No event loop anywhere (a script): sync receivers run here; otherwise the send runs
    on an event loop kept for this thread."""


def caller() -> Caller:
    """Where the calling code runs (see `Caller`): the one copy of that decision."""
    if asyncio._get_running_loop() is not None or in_trio_run():
        return Caller.EVENT_LOOP
    if _in_anyio_worker_thread():
        return Caller.WORKER_THREAD
    return Caller.NO_LOOP


def in_trio_run() -> bool:
    """Whether trio runs in this thread (sends ask once asyncio has said no)."""
    trio = sys.modules.get("trio")  # only when something imported it: trio may be absent
    if trio is None:
        return False
    try:  # every trio release has this (in_trio_run() is newer than trio 0.25)
        trio.lowlevel.current_trio_token()
    except RuntimeError:  # no trio run in this thread
        return False
    return True


def _in_anyio_worker_thread() -> bool:
    try:
        # Raises RuntimeError (NoEventLoopError in recent anyio) outside anyio's worker
        # threads, and the cancellation exception when the task waiting for this thread
        # was cancelled: then the send is cancelled before it starts, as it would be.
        anyio.from_thread.check_cancelled()
    except RuntimeError:
        return False
    return True
