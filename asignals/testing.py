"""Helpers for testing code that sends or receives signals.

Each helper is a context manager that works in a plain ``with`` block, in sync and async
tests alike, and undoes exactly what it did on exit.

Example:
    ```python
    from asignals.testing import capture, connected_to, muted

    async def test_paying_sends_order_paid():
        with capture(order_paid) as sent:
            await shop.pay(order)
        assert sent[0].payload == {"order": order}
    ```
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, NamedTuple

from ._hooks import TESTING as _TESTING
from ._hooks import add_hook, find_hook, remove_hook
from ._plans import Plan
from ._receivers import Receiver, same_sender
from ._signal import AsyncSignal

__all__ = ["Capture", "Sent", "capture", "connected_to", "muted"]


class Sent(NamedTuple):
    """One recorded send: who sent it and its keyword payload.

    Attributes:
        sender: The sender of the send.
        payload: A copy of its keyword payload (without ``signal`` and ``sender``).

    Example:
        ```python
        sender, payload = sent[0]
        assert payload == {"order": order}
        ```
    """

    sender: Any
    payload: dict[str, Any]


class Capture:
    """The sends recorded by `capture`, oldest first; indexable and iterable.

    Attributes:
        signal: The signal being recorded.
        sender: Only sends from this sender are recorded (``None``: every send).
        sends: The recorded `Sent` tuples, oldest first.

    Example:
        ```python
        with capture(order_paid) as sent:
            await checkout(cart)
        assert [s.sender for s in sent] == [Shop]
        ```
    """

    def __init__(self, signal: AsyncSignal, sender: Any) -> None:
        self.signal = signal
        self.sender = sender
        self.sends: list[Sent] = []

    def __len__(self) -> int:
        return len(self.sends)

    def __iter__(self) -> Iterator[Sent]:
        return iter(self.sends)

    def __getitem__(self, index: int) -> Sent:
        return self.sends[index]

    def __repr__(self) -> str:
        return f"<Capture of {self.signal!r}: {len(self.sends)} send(s)>"

    def _record(self, sender: Any, payload: dict[str, Any]) -> None:
        if self.sender is None or same_sender(self.sender, sender):
            self.sends.append(Sent(sender, dict(payload)))


class _Hook:
    """What the active helpers want from one signal's sends."""

    def __init__(self) -> None:
        self.muted = 0
        self.captures: list[Capture] = []

    def __call__(self, sender: Any, payload: dict[str, Any], plan: Plan) -> Plan:
        for recorder in self.captures:
            recorder._record(sender, payload)
        return () if self.muted else plan

    def observes(self, sender: Any) -> bool:
        return any(c.sender is None or same_sender(c.sender, sender) for c in self.captures)


@contextmanager
def _hooked(signal: AsyncSignal, helper: str) -> Iterator[_Hook]:
    if not isinstance(signal, AsyncSignal):
        raise TypeError(f"{helper}() takes AsyncSignal objects, got {signal!r}")
    hook = find_hook(signal, _Hook)
    if hook is None:  # the first active helper on this signal (a bridge's hook may be there)
        hook = _Hook()
        add_hook(signal, hook, _TESTING)
    try:
        yield hook
    finally:
        if not hook.muted and not hook.captures:
            remove_hook(signal, hook)


@contextmanager
def capture(signal: AsyncSignal, sender: Any = None) -> Iterator[Capture]:
    """Record every send of *signal* (from *sender* only, if given) while the block runs.

    Sends are recorded whether or not any receiver is connected, and also while muted.

    Example:
        ```python
        with capture(order_paid, sender=Shop) as sent:
            await checkout(cart)
        assert len(sent) == 1 and sent[0].payload["order"].total == 42
        ```
    """
    with _hooked(signal, "capture") as hook:
        recorder = Capture(signal, sender)
        hook.captures.append(recorder)
        try:
            yield recorder
        finally:
            hook.captures.remove(recorder)


@contextmanager
def muted(*signals: AsyncSignal) -> Iterator[None]:
    """Deliver sends of *signals* to no receiver while the block runs (they return ``[]``).

    Example:
        ```python
        with muted(order_paid):
            await load_fixture_orders()  # no receipts mailed
        ```
    """
    if not signals:
        raise TypeError("muted() needs at least one signal")
    with ExitStack() as stack:
        for signal in signals:
            hook = stack.enter_context(_hooked(signal, "muted"))
            hook.muted += 1
            stack.callback(_unmute, hook)
        yield


def _unmute(hook: _Hook) -> None:
    hook.muted -= 1


@contextmanager
def connected_to(receiver: Receiver, signal: AsyncSignal, sender: Any = None) -> Iterator[None]:
    """Connect *receiver* (strongly, so a lambda works) for the duration of the block.

    A receiver that was already connected stays connected afterwards.

    Example:
        ```python
        calls = []
        with connected_to(lambda sender, **kw: calls.append(kw), order_paid):
            await checkout(cart)
        ```
    """
    if not isinstance(signal, AsyncSignal):
        raise TypeError(
            f"connected_to(receiver, signal, sender=None): expected an AsyncSignal as the "
            f"second argument, got {signal!r}"
        )
    if signal._is_connected(receiver, sender):  # perhaps under a dispatch_uid: leave it be
        yield
        return
    signal.connect(receiver, sender, weak=False)
    try:
        yield
    finally:
        signal.disconnect(receiver, sender)
