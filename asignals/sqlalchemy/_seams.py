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
from .._dispatch import Caller, EachLoop, Plan
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


Prepared = tuple[Plan, EachLoop | None]
"""A send's plan (without the send hooks) and, when it can run right here (every receiver
a sync function called inline, and no send hook to see it), the loop that runs it
robustly for many payloads of its names."""


def prepare(signal: SeamSignal, sender: Any, payload: dict[str, Any]) -> Prepared:
    """What a send of *payload* from *sender* runs, looked up once for many such sends.

    A send hook may add receivers to be awaited (a bridge's publish): a hooked send is
    never run as if all its receivers were sync."""
    plan = dispatch.plan_for(signal, sender)
    if dispatch.is_hooked(signal) or not dispatch.inline(plan):
        return plan, None
    return plan, dispatch.each_for(tuple(payload))


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
    runs: Iterable[tuple[SeamSignal, Any, list[dict[str, Any]]]],
    prepared: Mapping[tuple[SeamSignal, Any], Prepared],
) -> None:
    """``send_robust`` each payload of *runs* (consecutive sends of one signal from one
    sender), whose prepared plans are all sync, right here.

    What ``send_robust_sync`` does for such plans, without deciding again, for each send,
    which thread this is. A send hook sees (and may replace) each send of its signal.
    """
    traced = dispatch.traced()
    for signal, sender, payloads in runs:
        plan, each = prepared[signal, sender]
        sent = 0
        if each is not None and plan and not traced:
            sent = each(signal, plan, sender, payloads)  # the hot path
            if sent == len(payloads):
                continue
        # The rest: through the send hook a receiver started (a capture), which sees each
        # send, or traced, or not all of them sync.
        for payload in payloads[sent:]:
            if dispatch.is_hooked(signal):
                _send_robust_one(signal, dispatch.prepare(signal, sender, payload), sender, payload)
            else:
                _send_robust_one(signal, plan, sender, payload)


def _send_robust_one(signal: SeamSignal, plan: Plan, sender: Any, payload: dict[str, Any]) -> None:
    if not plan:
        return
    if dispatch.traced():
        _send_traced(signal, "send_robust", plan, sender, payload)
    else:
        dispatch.run_inline(signal, plan, sender, payload, robust=True)


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
