"""White-box tests: internal bounds and bookkeeping that no public API can show.

These pin how asignals is built today — the connection table's published plans, the
loops compiled per payload shape and the caches that bound them, gather's split into
parts, the hook slot the testing helpers use, the private event loop of send_sync — and
are expected to change with a redesign. Everything a user can observe is tested by
behaviour elsewhere (through `receivers_for`, `has_listeners`, the responses of a send,
logging, `gc` and weak references); a test belongs here only when private state is the
one thing that can say what it checks.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest
from helpers import MODES, Mode, connect_every_kind, sender_of

from asignals import AsyncSignal
from asignals import _dispatch as dispatch
from asignals._connections import Connections
from asignals._receivers import SYNC, make_ref


class Shop:
    pass


def echo(**kwargs: Any) -> dict[str, Any]:
    return kwargs


def receiver_named(name: str) -> Any:
    def receive(**kwargs: Any) -> str:
        return name

    receive.__qualname__ = name
    return receive


def connect(table: Connections, receiver: Any, sender: Any = None, uid: Any = None) -> None:
    table._connect(receiver, make_ref(receiver, True, table._on_death), sender, uid, SYNC)


def names(table: Connections, sender: Any = None) -> list[str]:
    return [ref().__qualname__ for ref, _ in table._plan_for(sender)]


# -- the connection table on its own: the plans it publishes after each kind of change --------


def test_plans_follow_connection_order_for_each_sender() -> None:
    table = Connections()
    a, b, c = receiver_named("a"), receiver_named("b"), receiver_named("c")
    shop = Shop()
    connect(table, a)
    connect(table, b, sender=shop)
    connect(table, c)
    connect(table, b, sender="shop.Order")
    assert names(table) == ["a", "c"]
    assert names(table, shop) == ["a", "b", "c"]
    assert names(table, "".join(["shop.", "Order"])) == ["a", "c", "b"]
    assert names(table, Shop()) == ["a", "c"]
    any_plan, own = table._plans
    assert len(any_plan) == 2
    assert len(own) == 2


def test_duplicates_and_disconnects_update_only_their_plans() -> None:
    table = Connections()
    a, b = receiver_named("a"), receiver_named("b")
    connect(table, a)
    connect(table, a)  # a duplicate: nothing changes
    connect(table, b, uid="b-uid")
    connect(table, receiver_named("other"), uid="b-uid")  # same uid: nothing changes
    assert names(table) == ["a", "b"]
    assert table._disconnect(None, None, "b-uid")
    assert not table._disconnect(None, None, "b-uid")
    assert table._disconnect(a, None, None)
    assert table._plans == ((), {})
    assert table._connections == []


def test_a_dead_sender_takes_its_plan_with_it() -> None:
    table = Connections()
    a = receiver_named("a")
    shop = Shop()
    connect(table, a, sender=shop)
    assert len(table._plans[1]) == 1
    del shop
    gc.collect()
    assert table._plans == ((), {})
    assert table._by_ref == {}


def test_a_death_while_the_lock_is_held_is_pruned_by_the_next_change() -> None:
    table = Connections()
    doomed, kept = receiver_named("doomed"), receiver_named("kept")
    connect(table, doomed)
    with table._lock:
        del doomed
        gc.collect()
    assert table._prune_pending
    connect(table, kept)
    assert names(table) == ["kept"]
    assert not table._prune_pending


# -- the loops compiled per payload shape, and the caches that bound them --------------------


def _compiled(shape: tuple[str, ...]) -> bool:
    """Whether a loop was compiled for these payload names (by any send mode)."""
    return shape in dispatch.loops or any(names == shape for names, _, _ in dispatch._guessed)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_ten_thousand_payload_names_compile_no_loop(mode: Mode) -> None:
    """(test_send_payloads.py checks that they are delivered.)"""
    sig = AsyncSignal("form")
    sig.connect(echo)
    form = {f"field_{index}": index for index in range(10_000)}
    await sender_of(sig, mode)(None, **form)
    shape = tuple(form)
    assert not _compiled(shape)  # nothing compiled (seconds, before the first await)
    assert dispatch.loop_for(shape) is dispatch.any_payload_loop


@pytest.mark.anyio
async def test_payload_names_up_to_the_cap_are_compiled() -> None:
    sig = AsyncSignal("wide")
    sig.connect(echo)
    at_cap = {f"cap_{index}": index for index in range(dispatch._MAX_NAMES)}
    over = {**at_cap, "one_more": 0}
    assert (await sig.send(None, **at_cap))[0][1] == {"signal": sig, "sender": None, **at_cap}
    assert (await sig.send(None, **over))[0][1] == {"signal": sig, "sender": None, **over}
    assert _compiled(tuple(at_cap))
    assert not _compiled(tuple(over))


@pytest.mark.anyio
async def test_the_shape_caches_are_bounded_and_compile_each_shape_once(
    monkeypatch: pytest.MonkeyPatch, anyio_backend_name: str
) -> None:
    """Tiny caches, empty at first, restored afterwards (test_send_payloads.py sends more
    shapes than the real ones hold, in a fresh interpreter).

    gather fills `loops` on trio, and the gather children's `child_loops` on asyncio."""
    monkeypatch.setattr(dispatch, "loops", {})
    monkeypatch.setattr(dispatch, "child_loops", {})
    monkeypatch.setattr(dispatch, "_MAX_SHAPES", 2)
    sig = AsyncSignal("s")
    seen: list[dict[str, Any]] = []
    keep = connect_every_kind(sig, seen, Shop)
    for index in range(5):
        for mode in MODES:
            await sender_of(sig, mode)(Shop, **{f"name{index}": index})
    assert seen == [{f"name{i}": i} for i in range(5) for _ in range(4 * 4)]
    del keep
    if anyio_backend_name == "trio":
        assert len(dispatch.loops) == 2
        assert dispatch.loop_for(("name0",)) is dispatch.loops[("name0",)]  # compiled once
    else:
        assert len(dispatch.child_loops) == 2
        child = dispatch.child_loop_for(("name0",), tuple)
        assert child is dispatch.child_loops[("name0",), tuple]  # compiled once
        beyond = dispatch.child_loop_for(("name4",), tuple)  # the ** child, shared
        assert beyond is dispatch.child_loop_for(("name5",), tuple) is not child
