"""Random sequences of connect / disconnect / send, checked against a simple model.

The model is an ordered list of connections ``(receiver, sender, dispatch_uid)``: connecting
appends unless the same receiver (or the same dispatch_uid) is already connected for the same
sender; a send from ``s`` calls, in order, every connection made for any sender or for ``s``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
from helpers import MODES, Mode, sender_of
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from asignals import AsyncSignal

CALLS: list[str] = []


def make_receiver(name: str, is_async: bool) -> Callable[..., Any]:
    if is_async:

        async def receive_async(**kwargs: Any) -> str:
            await anyio.lowlevel.checkpoint()
            CALLS.append(name)
            return name

        return receive_async

    def receive(**kwargs: Any) -> str:
        CALLS.append(name)
        return name

    return receive


# Module-level, hence alive for the whole run even when connected weakly.
RECEIVERS = [make_receiver("r0", False), make_receiver("r1", True), make_receiver("r2", False)]


class Anchor:
    pass


SENDERS: list[Any] = [None, Anchor, Anchor(), "text sender", [1, 2]]
UIDS = [None, None, "u1", "u2"]

receiver_index = st.integers(0, len(RECEIVERS) - 1)
sender_index = st.integers(0, len(SENDERS) - 1)
uids = st.sampled_from(UIDS)

Entry = tuple[Callable[..., Any], Any, str | None]


def matches(
    entry: Entry, receiver: Callable[..., Any] | None, sender: Any, uid: str | None
) -> bool:
    connected_receiver, connected_sender, connected_uid = entry
    if connected_sender is not sender:
        return False
    if uid is not None:
        return connected_uid == uid
    return connected_uid is None and connected_receiver is receiver


class SignalModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.signal = AsyncSignal("model")
        self.entries: list[Entry] = []

    def expected(self, sender: Any) -> list[Callable[..., Any]]:
        return [
            receiver
            for receiver, connected_sender, _ in self.entries
            if connected_sender is None or (sender is not None and connected_sender is sender)
        ]

    @rule(r=receiver_index, s=sender_index, uid=uids, weak=st.booleans())
    def connect(self, r: int, s: int, uid: str | None, weak: bool) -> None:
        receiver, sender = RECEIVERS[r], SENDERS[s]
        assert self.signal.connect(receiver, sender, weak=weak, dispatch_uid=uid) is receiver
        if not any(matches(entry, receiver, sender, uid) for entry in self.entries):
            self.entries.append((receiver, sender, uid))

    @rule(s=sender_index, uid=uids)
    def connect_a_receiver_that_dies_at_once(self, s: int, uid: str | None) -> None:
        # Weakly connected, and nothing else refers to the lambda: it is gone on return.
        self.signal.connect(lambda **kwargs: "dead", SENDERS[s], dispatch_uid=uid)

    @rule(r=receiver_index, s=sender_index)
    def disconnect_receiver(self, r: int, s: int) -> None:
        receiver, sender = RECEIVERS[r], SENDERS[s]
        kept = [e for e in self.entries if not matches(e, receiver, sender, None)]
        assert self.signal.disconnect(receiver, sender) == (len(kept) < len(self.entries))
        self.entries = kept

    @rule(s=sender_index, uid=st.sampled_from(["u1", "u2"]))
    def disconnect_uid(self, s: int, uid: str) -> None:
        sender = SENDERS[s]
        kept = [e for e in self.entries if not matches(e, None, sender, uid)]
        removed = self.signal.disconnect(sender=sender, dispatch_uid=uid)
        assert removed == (len(kept) < len(self.entries))
        self.entries = kept

    @rule(s=sender_index, mode=st.sampled_from(MODES))
    def send(self, s: int, mode: Mode) -> None:
        sender = SENDERS[s]
        expected = self.expected(sender)
        CALLS.clear()

        async def main() -> list[tuple[Callable[..., Any], Any]]:
            return await sender_of(self.signal, mode)(sender, payload=s)

        responses = anyio.run(main)
        assert [r for r, _ in responses] == expected
        assert [v for _, v in responses] == [CALLS_NAME[r] for r in expected]
        if mode.startswith("send"):
            assert [CALLS_NAME[r] for r in expected] == CALLS
        else:
            assert sorted(CALLS) == sorted(CALLS_NAME[r] for r in expected)

    @invariant()
    def receivers_match_the_model(self) -> None:
        for sender in SENDERS:
            expected = self.expected(sender)
            assert self.signal.receivers_for(sender) == expected
            assert self.signal.has_listeners(sender) == bool(expected)


CALLS_NAME = {receiver: f"r{index}" for index, receiver in enumerate(RECEIVERS)}

SignalModel.TestCase.settings = settings(
    max_examples=100, stateful_step_count=20, deadline=None, database=None
)
TestSignalModel = SignalModel.TestCase
