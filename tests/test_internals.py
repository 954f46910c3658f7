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

from asignals._connections import Connections
from asignals._receivers import SYNC, make_ref


class Shop:
    pass


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
