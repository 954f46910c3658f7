"""Senders matched by value (str, bytes, numbers, tuples of those) or by identity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from helpers import MODES, Mode, receivers, sender_of, sync_recorder

from asignals import AsyncSignal
from asignals.testing import capture

pytestmark = pytest.mark.anyio


def built(*parts: str) -> str:
    """A string equal to "".join(parts) but never the same object as a literal."""
    return "".join(parts)


@dataclass
class Point:  # equal instances, each weakly referenceable: identity semantics
    x: int


def twins() -> list[tuple[Any, Any]]:
    """(connected, sent): equal values that are distinct objects."""
    return [
        (built("shop.", "Order"), "shop.Order"),
        (int("123456789012345"), 123456789012345),
        (built("a", "b").encode(), b"ab"),
        ((built("shop.", "Order"), int("99999999999")), ("shop.Order", 99999999999)),
        ((1, (built("x", "y"), b"z")), (1, ("xy", b"z"))),
        (float("2.5"), 2.5),
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("connected", "sent"), twins())
async def test_equal_value_senders_reach_the_receiver(
    connected: Any, sent: Any, mode: Mode
) -> None:
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    sig.connect(handler, sender=connected)
    assert connected is not sent or isinstance(sent, float)
    assert receivers(await sender_of(sig, mode)(sent)) == [handler]
    assert receivers(await sender_of(sig, mode)("something else")) == []
    assert calls == ["h"]


@pytest.mark.parametrize(("connected", "sent"), twins())
def test_value_senders_in_lookups_and_disconnect(connected: Any, sent: Any) -> None:
    sig = AsyncSignal("s")
    handler = sync_recorder([], "h")
    sig.connect(handler, sender=connected)
    sig.connect(handler, sender=sent)  # the same sender: no second connection
    assert sig.receivers_for(sent) == [handler]
    assert sig.has_listeners(sent)
    assert sig.disconnect(handler, sender=sent)
    assert not sig.has_listeners(connected)
    assert sig.receivers_for(connected) == []


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(1, True, id="int-bool"),
        pytest.param(1, 1.0, id="int-float"),
        pytest.param(("a", 1), ("a", True), id="tuple-int-bool"),
        pytest.param("1", 1, id="str-int"),
        pytest.param(b"a", "a", id="bytes-str"),
    ],
)
async def test_equal_values_of_other_types_are_other_senders(a: Any, b: Any) -> None:
    assert a == b or type(a) is not type(b)
    sig = AsyncSignal("s")
    for_a, for_b = sync_recorder([], "a"), sync_recorder([], "b")
    sig.connect(for_a, sender=a)
    sig.connect(for_b, sender=b)
    assert receivers(await sig.send(a)) == [for_a]
    assert receivers(await sig.send(b)) == [for_b]


async def test_weakly_referenceable_objects_keep_identity() -> None:
    sig = AsyncSignal("s")
    handler = sync_recorder([], "h")
    mine = Point(1)
    sig.connect(handler, sender=mine)
    assert Point(1) == mine
    assert await sig.send(Point(1)) == []
    assert receivers(await sig.send(mine)) == [handler]


async def test_a_receiver_for_one_sender_and_for_all_is_called_twice() -> None:
    """As in Django: one connection for "shop.Order", one for every sender."""
    sig = AsyncSignal("s")
    calls: list[str] = []
    handler = sync_recorder(calls, "h")
    other = sync_recorder(calls, "other")
    sig.connect(handler, sender=built("shop.", "Order"))
    sig.connect(other)
    sig.connect(handler)
    assert receivers(await sig.send("shop.Order")) == [handler, other, handler]
    assert receivers(await sig.send("elsewhere")) == [other, handler]
    assert calls == ["h", "other", "h", "other", "h"]


async def test_capture_matches_value_senders() -> None:
    sig = AsyncSignal("s")
    with capture(sig, sender=built("shop.", "Order")) as sent:
        await sig.send("shop.Order", n=1)
        await sig.send("other", n=2)
        assert sig.has_listeners("shop.Order")
    assert [s.payload for s in sent] == [{"n": 1}]


async def test_value_sender_connections_survive_garbage_collection() -> None:
    import gc

    sig = AsyncSignal("s")
    handler = sync_recorder([], "h")
    sig.connect(handler, sender=built("kept", "alive"))
    gc.collect()
    assert receivers(await sig.send("keptalive")) == [handler]
