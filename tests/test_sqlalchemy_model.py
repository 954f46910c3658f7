"""Random sequences of ORM operations against a simple model of what must be delivered.

The model does not know about flushes or savepoints at all: what a commit must deliver is
the net difference between the rows before the transaction and after it. A row that
appeared is one ``post_save(created=True)``; a row whose item differs is one
``post_save(created=False)``; a row that is gone is one ``post_delete``; anything else
(inserted and deleted again, changed and changed back, work in a rolled-back savepoint or
transaction) is nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from orm_models import Base, Order, real_sqlite_transactions
from sqlalchemy import Engine, create_engine, delete, inspect, select
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from asignals.sqlalchemy import post_delete, post_save, track, untrack

ITEMS = ("a", "b", "c")
Operation = tuple[Any, ...]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from(ITEMS)),
        st.tuples(st.just("change"), st.integers(0, 5), st.sampled_from(ITEMS)),
        st.tuples(st.just("delete"), st.integers(0, 5)),
        st.tuples(st.sampled_from(["flush", "begin_nested", "release", "rollback_nested"])),
        st.tuples(st.sampled_from(["commit", "rollback"])),
    ),
    max_size=25,
)


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = real_sqlite_transactions(create_engine("sqlite://"))
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def rows(session: Session) -> dict[int, str]:
    return {row.id: row.item for row in session.execute(select(Order.id, Order.item))}


def expected(before: dict[int, str], after: dict[int, str]) -> set[tuple[Any, ...]]:
    out: set[tuple[Any, ...]] = set()
    for id_, item in after.items():
        if id_ not in before:
            out.add(("post_save", id_, True, item))
        elif before[id_] != item:
            out.add(("post_save", id_, False, item))
    out.update(("post_delete", id_, None, None) for id_ in before.keys() - after.keys())
    return out


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
@example(ops=[("begin_nested",), ("add", "a"), ("release",), ("rollback",)])
@example(ops=[("add", "a"), ("commit",), ("rollback",), ("change", 0, "a"), ("commit",)])
@example(ops=[("add", "a"), ("commit",), ("delete", 0), ("flush",), ("add", "a"), ("commit",)])
def test_commits_deliver_the_net_change_of_the_transaction(
    engine: Engine, ops: list[Operation]
) -> None:
    with Session(engine) as cleanup:
        cleanup.execute(delete(Order))  # a Core statement: sends nothing
        cleanup.commit()
    sessions = sessionmaker(engine, expire_on_commit=False)
    delivered: list[tuple[Any, ...]] = []

    def on_save(
        instance: Order, created: bool, update_fields: Any, changes: Any, **kw: Any
    ) -> None:
        if not created:
            assert update_fields == frozenset({"item"})
            assert changes["item"][1] == instance.item
        delivered.append(("post_save", instance.id, created, instance.item))

    def on_delete(instance: Order, **kw: Any) -> None:
        identity = inspect(instance).identity  # its attributes may be expired and gone
        assert identity is not None
        delivered.append(("post_delete", identity[0], None, None))

    post_save.connect(on_save, sender=Order)
    post_delete.connect(on_delete, sender=Order)
    track(sessions)
    try:
        with sessions() as session:
            before = rows(session)
            objects: list[Order] = []
            savepoints: list[SessionTransaction] = []
            for op in ops:
                live = [o for o in objects if _live(o)]
                name = op[0]
                if name == "add":
                    order = Order(item=op[1])
                    session.add(order)
                    objects.append(order)
                elif name == "change" and live:
                    live[op[1] % len(live)].item = op[2]
                elif name == "delete" and live:
                    victim = live[op[1] % len(live)]
                    if inspect(victim).pending:  # never flushed: taking it out is deleting it
                        session.expunge(victim)
                    else:
                        session.delete(victim)
                elif name == "flush":
                    session.flush()
                elif name == "begin_nested":
                    savepoints.append(session.begin_nested())
                elif name in ("release", "rollback_nested") and savepoints:
                    savepoint = savepoints.pop()
                    if name == "release":
                        savepoint.commit()
                    else:
                        savepoint.rollback()
                        _load(objects)
                elif name in ("commit", "rollback"):
                    savepoints.clear()
                    delivered.clear()
                    if name == "commit":
                        session.commit()
                        after = rows(session)
                        assert len(delivered) == len(set(delivered)), delivered
                        assert set(delivered) == expected(before, after), ops
                    else:
                        session.rollback()
                        assert delivered == []
                        after = rows(session)
                        _load(objects)
                        assert after == before
                    before = after
    finally:
        untrack(sessions)
        post_save.disconnect(on_save, sender=Order)
        post_delete.disconnect(on_delete, sender=Order)


def _load(objects: list[Order]) -> None:
    """Read back what a rollback expired: an old value never loaded is unknown (None) in
    ``changes``, and setting the same value again then counts as a change."""
    for order in objects:
        if inspect(order).persistent:
            order.item


def _live(order: Order) -> bool:
    state = inspect(order)
    return bool(state.pending or state.persistent)
