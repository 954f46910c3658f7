"""Several send hooks on one signal: `asignals.testing` and `asignals.redis` together.

A signal has one hook slot, ``AsyncSignal._hook``, which a send checks once (``if
self._hook is not None``) and which may replace the send's plan. With nothing installed the
slot is ``None`` and costs that one check. When something is installed the slot holds a
``HookChain``: the installed hooks, each one given the plan the previous one returned, in a
fixed order that does not depend on who installed first:

* ``BRIDGE`` hooks (``asignals.redis``) come first: they add the entry that publishes the
  message, or replace the plan with the one that enqueues it;
* ``TESTING`` hooks (``asignals.testing``) come last, so that ``capture()`` records every
  send and ``muted()`` silences the whole plan, the bridge's entry included: a muted send
  publishes nothing.

Install and remove hooks only through `add_hook` and `remove_hook`; they undo exactly what
they did, whatever else is installed.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Final, TypeVar

if TYPE_CHECKING:
    from ._plans import Plan
    from ._signal import AsyncSignal, SendHook

BRIDGE: Final = 0
"""The order of a hook that carries sends elsewhere (`asignals.redis`)."""

TESTING: Final = 10
"""The order of `asignals.testing`'s hook: it sees the plan last."""

H = TypeVar("H")

_lock = threading.Lock()  # add and remove from any thread; sends read the slot unlocked


class HookChain:
    """The hooks installed on one signal, in order; immutable (replaced on every change)."""

    __slots__ = ("hooks", "orders")

    def __init__(self, installed: tuple[tuple[int, SendHook], ...]) -> None:
        self.orders = installed
        self.hooks = tuple(hook for _, hook in installed)

    def __call__(self, sender: Any, payload: dict[str, Any], plan: Plan) -> Plan:
        for hook in self.hooks:
            plan = hook(sender, payload, plan)
        return plan

    def observes(self, sender: Any) -> bool:
        return any(hook.observes(sender) for hook in self.hooks)


def _installed(signal: AsyncSignal) -> tuple[tuple[int, SendHook], ...]:
    chain = signal._hook
    return chain.orders if isinstance(chain, HookChain) else ()


def add_hook(signal: AsyncSignal, hook: SendHook, order: int) -> None:
    """Install *hook* on *signal* at position *order* (`BRIDGE` or `TESTING`)."""
    with _lock:
        # sorted() is stable: hooks of equal order keep the order they were added in.
        installed = sorted((*_installed(signal), (order, hook)), key=lambda pair: pair[0])
        signal._hook = HookChain(tuple(installed))
        with signal._lock:  # as every change of the table: one version per change
            signal._changed()  # the next send prepares again, with the hook
    # Once installed: a capture() of a model signal needs its ORM events as a receiver
    # does, and asks whether it is hooked.
    signal._in_use()


def remove_hook(signal: AsyncSignal, hook: SendHook) -> None:
    """Take *hook* off *signal*; the slot is ``None`` again once nothing is left."""
    with _lock:
        rest = tuple(pair for pair in _installed(signal) if pair[1] is not hook)
        signal._hook = HookChain(rest) if rest else None
        with signal._lock:
            signal._changed()


def find_hook(signal: AsyncSignal, kind: type[H]) -> H | None:
    """The installed hook of class *kind*, if any."""
    for _, hook in _installed(signal):
        if isinstance(hook, kind):
            return hook
    return None
