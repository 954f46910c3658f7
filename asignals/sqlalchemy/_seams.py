"""What the model signals need of the asignals core beyond its public API: the core seams.

Every access of `asignals.sqlalchemy` to the core's private state, and every import from
its private modules, is in this module, each marked ``# core seam:`` with what it needs.
The rest of the package uses `AsyncSignal`'s public methods and the names defined here, so
that a dispatch API of the core (prepare a send, run it) can replace these in one sweep.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .. import AsyncSignal, _sync  # core seam: _sync, send_sync's inline run, thread checks
from .._dispatch import Loop, Plan, loop_for, loops  # core seam: plans and compiled loops
from .._receivers import SYNC  # core seam: how a plan marks a receiver called inline
from .._receivers import describe as describe  # core seam: how errors name a receiver
from .._receivers import make_ref as make_ref  # core seam: receiver references (weak=...)
from .._signal import SendHook  # core seam: asignals.testing's (and the bridge's) send hook


class SeamSignal(AsyncSignal):
    """An `AsyncSignal` that learns when it is first used, and answers what delivery asks.

    Subclasses override `_accept` and `_in_use`; everything else here reads or overrides
    the core's private state.
    """

    def _accept(self, receiver: Any, is_async: bool, to_thread: bool) -> None:
        """A receiver passed the core's checks and is about to be connected: raise to refuse
        it. By default the signal is now in use."""
        self._in_use()

    def _in_use(self) -> None:
        """A receiver is being connected, or a send hook (a test's capture) was installed."""

    # core seam: connect() validates every receiver with _check_receiver; overriding it is
    # how a model signal learns of a receiver, lazy (string sender) ones included.
    def _check_receiver(self, receiver: Any, to_thread: bool, timeout: float | None) -> bool:
        is_async = super()._check_receiver(receiver, to_thread, timeout)
        self._accept(receiver, is_async, to_thread)
        return is_async

    def _check(self, receiver: Any, to_thread: bool, timeout: float | None) -> None:
        """Validate a receiver now, as connect() would, without connecting it."""
        self._check_receiver(receiver, to_thread, timeout)  # core seam: connect()'s checks

    # core seam: asignals.testing and asignals.redis install their hooks by assigning
    # _hook (asignals/_hooks.py): a capture() of a session signal needs the session events
    # as much as a receiver does.
    @property
    def _hook(self) -> SendHook | None:
        return self._send_hook

    @_hook.setter
    def _hook(self, hook: SendHook | None) -> None:  # pyright: ignore[reportIncompatibleVariableOverride]
        self._send_hook = hook
        if hook is not None:
            self._in_use()

    def _idle(self) -> bool:
        """Nothing is connected (for any sender) and no test is capturing: skip all work."""
        return not self._connections and self._send_hook is None  # core seam: any connection

    def _hooked(self) -> bool:
        """A send hook (a test's capture, a bridge) sees, and may replace, every send."""
        return self._send_hook is not None

    def _plans_version(self) -> int:
        """Changes whenever the receivers of some sender may have changed."""
        return self._version  # core seam: the connection table's version


Prepared = tuple[Plan, Loop]
"""A send's plan (without the send hooks) and the dispatch loop for its payload's names."""


def prepare(signal: SeamSignal, sender: Any, payload: dict[str, Any]) -> Prepared:
    """What a send of *payload* from *sender* runs, looked up once for many such sends."""
    plan = signal._plan_for(sender)  # core seam: a sender's plan
    signal._sending()  # core seam: the plan is taken (Connections._unsent)
    return plan, _loop_for(payload)


def _loop_for(payload: dict[str, Any]) -> Loop:
    shape = tuple(payload)
    return loops.get(shape) or loop_for(shape)  # core seam: the loop for a payload's names


def sync_only(plan: Plan) -> bool:
    """Every receiver of *plan* is a sync function called inline."""
    return all(call is SYNC for _, call in plan)  # core seam: a plan's entries


def send_inline(signal: SeamSignal, sender: Any, payload: dict[str, Any]) -> None:
    """``send`` to sync receivers only, right here, whatever thread this is: ``send``
    without its check for a running event loop (a script or a sync session has none)."""
    plan = signal._plan_to_send(sender, payload)  # core seam: the plan, hooks applied
    if plan:
        # core seam: run a compiled loop (robust=False) by hand, as send_sync would
        _sync._run_inline(_loop_for(payload)(signal, plan, False, sender, payload))


def send_robust_inline(
    sends: Iterable[tuple[SeamSignal, Any, dict[str, Any]]],
    prepared: Mapping[tuple[SeamSignal, Any], Prepared],
) -> None:
    """``send_robust`` each of *sends*, whose prepared plans are all sync, right here.

    What ``send_robust_sync`` does for such plans, without deciding again, for each send,
    which thread this is. A send hook sees (and may replace) each send of its signal.
    """
    hooked = any(signal._hooked() for signal, _ in prepared)
    for signal, sender, payload in sends:
        plan, loop = prepared[signal, sender]
        if hooked and signal._hooked():
            plan = signal._plan_to_send(sender, payload)  # core seam: the plan, hooks applied
        if plan:
            # core seam: run a compiled loop (robust=True) by hand, as send_sync would
            _sync._run_inline(loop(signal, plan, True, sender, payload))


def in_worker_thread() -> bool:
    """This is an anyio worker thread, which can run a send on its event loop and wait."""
    # core seam: send_sync's decision of where a send from sync code runs
    return not _sync._thread_runs_event_loop() and _sync._in_anyio_worker_thread()
