"""What the model signals need of the asignals core: its dispatch API, in their words.

`asignals.sqlalchemy` reaches the core only through public API, `asignals._dispatch` (the
dispatch API every integration uses: docs/design.md), the tracing seam `asignals._trace`
(a commit's delivery continues the trace of its flush) and the subclass hooks of
`AsyncSignal` (`_accept`, `_in_use`); this module names what it uses of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .. import AsyncSignal, _trace
from .. import _dispatch as dispatch
from .._dispatch import Caller, Loop, Plan
from .._dispatch import Watch as Watch
from .._dispatch import is_hooked as is_hooked
from .._receivers import describe as describe
from .._receivers import make_ref as make_ref
from .._trace import capture as capture
from .._trace import continued as continued


class SeamSignal(AsyncSignal):
    """An `AsyncSignal` that learns when it is first used (its `_in_use` and `_accept`
    hooks), and answers what delivery asks."""

    def _check(self, receiver: Any, to_thread: bool, timeout: float | None) -> None:
        """Validate a receiver now, as connect() would, without connecting it."""
        dispatch.check_receiver(self, receiver, to_thread=to_thread, timeout=timeout)

    def _idle(self) -> bool:
        """Nothing is connected (for any sender) and no test is capturing: skip all work."""
        return dispatch.is_idle(self)

    def _hooked(self) -> bool:
        """A send hook (a test's capture, a bridge) sees, and may replace, every send."""
        return dispatch.is_hooked(self)


Prepared = tuple[Plan, Loop]
"""A send's plan (without the send hooks) and the robust loop for its payload's names."""


def prepare(signal: SeamSignal, sender: Any, payload: dict[str, Any]) -> Prepared:
    """What a send of *payload* from *sender* runs, looked up once for many such sends."""
    plan = dispatch.plan_for(signal, sender)
    return plan, dispatch.loop_for(tuple(payload), type(plan), robust=True)


def sync_only(plan: Plan) -> bool:
    """Every receiver of *plan* is a sync function called inline."""
    return dispatch.inline(plan)


def send_inline(signal: SeamSignal, sender: Any, payload: dict[str, Any]) -> None:
    """``send`` to sync receivers only, right here, whatever thread this is: ``send``
    without its check for a running event loop (a script or a sync session has none)."""
    plan = dispatch.prepare(signal, sender, payload)
    if not plan:
        return
    if dispatch.traced():
        _send_traced(signal, "send", plan, sender, payload)
        return
    dispatch.run_inline(signal, plan, sender, payload, robust=False)


def send_robust_inline(
    sends: Iterable[tuple[SeamSignal, Any, dict[str, Any]]],
    prepared: Mapping[tuple[SeamSignal, Any], Prepared],
) -> None:
    """``send_robust`` each of *sends*, whose prepared plans are all sync, right here.

    What ``send_robust_sync`` does for such plans, without deciding again, for each send,
    which thread this is. A send hook sees (and may replace) each send of its signal.
    """
    traced = dispatch.traced()
    for signal, sender, payload in sends:
        plan: Plan
        loop: Loop | None
        plan, loop = prepared[signal, sender]
        if dispatch.is_hooked(signal):
            plan = dispatch.prepare(signal, sender, payload)  # maybe of another kind
            loop = None
        if not plan:
            continue
        if traced:
            _send_traced(signal, "send_robust", plan, sender, payload)
        elif loop is None:
            dispatch.run_inline(signal, plan, sender, payload, robust=True)
        else:
            # What run_inline does with a loop at hand, without a call per send: the
            # robust loop over sync receivers finishes at its first step.
            coroutine = loop(signal, plan, sender, payload)
            try:
                coroutine.send(None)
            except StopIteration:
                continue
            coroutine.close()  # pragma: no cover - a plan of sync receivers never suspends
            raise AssertionError(
                f"{signal!r}: a send of sync receivers suspended"
            )  # pragma: no cover


def _send_traced(
    signal: SeamSignal, mode: str, plan: Plan, sender: Any, payload: dict[str, Any]
) -> None:
    """``send`` or ``send_robust`` (*mode*) of a sync *plan*, right here, in its span (a
    function of its own: a closure's cells would slow the untraced sends down)."""
    robust = mode == "send_robust"
    _trace.run_sync(
        signal,
        mode,
        plan,
        lambda plan: dispatch.run_inline(signal, plan, sender, payload, robust=robust),
    )


def in_worker_thread() -> bool:
    """This is an anyio worker thread, which can run a send on its event loop and wait."""
    return dispatch.caller() is Caller.WORKER_THREAD
