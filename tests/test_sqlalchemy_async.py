"""asignals.sqlalchemy with AsyncSession, on SQLite (aiosqlite, file and memory) and PostgreSQL
(asyncpg): when each signal arrives, with what, and what never arrives."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import pytest_asyncio
from orm_models import Base, Customer, Order, Tag, recording
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from asignals.sqlalchemy import (
    m2m_changed,
    post_delete,
    post_save,
    pre_delete,
    pre_save,
    track,
    untrack,
)

pytestmark = pytest.mark.asyncio

DATABASES = ["sqlite-memory", "sqlite-file", "postgresql"]


@pytest.fixture(params=DATABASES)
def async_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite-memory":
        return "sqlite+aiosqlite://"
    if request.param == "sqlite-file":
        return f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}"
    postgres = request.getfixturevalue("postgres")
    url: str = postgres.url("asyncpg")
    return url


@pytest_asyncio.fixture
async def maker(async_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_async_engine(async_url)
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.drop_all)
        await connection.run_sync(Base.metadata.create_all)
    sessions = async_sessionmaker(engine)
    track(sessions)
    try:
        yield sessions
    finally:
        untrack(sessions)
        await engine.dispose()


def saved(item: str, created: bool, changes: dict[str, Any] | None = None) -> tuple[Any, ...]:
    if created:
        return ("post_save", "Order", item, True, None, {})
    assert changes is not None
    return ("post_save", "Order", item, False, frozenset(changes), changes)


async def test_post_save_arrives_after_the_commit_with_readable_attributes(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    seen_during_flush: list[Any] = []
    with recording(post_save) as events:
        async with maker() as session:  # expire_on_commit=True, the default
            session.add(Order(item="pizza", quantity=2))
            await session.flush()
            seen_during_flush.extend(events)
            await session.commit()
            # The receiver already ran, and read item after the COMMIT without MissingGreenlet.
            assert events == [saved("pizza", True)]
    assert seen_during_flush == []


async def test_pre_save_changes_are_saved(maker: async_sessionmaker[AsyncSession]) -> None:
    async def fill_slug(sender: type[Order], instance: Order, created: bool, **kwargs: Any) -> None:
        # A coroutine receiver, awaited through SQLAlchemy's greenlet bridge.
        await anyio.lowlevel.checkpoint()
        instance.slug = f"{instance.item}-{instance.quantity}"

    pre_save.connect(fill_slug, sender=Order)
    try:
        async with maker() as session:
            session.add(Order(item="pizza", quantity=3))
            await session.commit()
        async with maker() as session:
            slug = await session.scalar(select(Order.slug))
    finally:
        pre_save.disconnect(fill_slug, sender=Order)
    assert slug == "pizza-3"


async def test_updates_merge_over_autoflushes(maker: async_sessionmaker[AsyncSession]) -> None:
    async with maker() as session:
        session.add(Order(item="pizza"))
        await session.commit()
    with recording(post_save, pre_save) as events:
        async with maker() as session:
            order = (await session.scalars(select(Order))).one()
            order.item = "pasta"
            await session.scalar(select(func.count()).select_from(Order))  # autoflush
            order.quantity = 5
            await session.scalar(select(func.count()).select_from(Order))  # autoflush
            order.item = "soup"
            await session.commit()
    pre = [e for e in events if e[0] == "pre_save"]
    post = [e for e in events if e[0] == "post_save"]
    assert len(pre) == 3  # one per flush that saved it
    assert post == [saved("soup", False, {"item": ("pizza", "soup"), "quantity": (1, 5)})]


async def test_a_change_undone_delivers_nothing(maker: async_sessionmaker[AsyncSession]) -> None:
    async with maker() as session:
        session.add(Order(item="pizza"))
        await session.commit()
    with recording(post_save) as events:
        async with maker() as session:
            order = (await session.scalars(select(Order))).one()
            order.item = "pasta"
            await session.flush()
            order.item = "pizza"
            await session.commit()
    assert events == []


async def test_insert_then_update_is_one_created_and_insert_then_delete_nothing(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    with recording(post_save, post_delete) as events:
        async with maker() as session:
            kept, dropped = Order(item="pizza"), Order(item="tmp")
            session.add_all([kept, dropped])
            await session.flush()
            kept.item = "pasta"
            await session.delete(dropped)
            await session.flush()
            await session.commit()
    assert events == [saved("pasta", True)]


async def test_rollback_delivers_nothing(maker: async_sessionmaker[AsyncSession]) -> None:
    with recording() as events:
        async with maker() as session:
            session.add(Order(item="pizza"))
            await session.flush()
            await session.rollback()
            session.add(Order(item="pasta"))
            await session.flush()
        # closed without a commit: rolled back as well
    assert [e[0] for e in events] == ["pre_save", "pre_save"]  # only the in-flush signal
    async with maker() as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == 0


async def test_savepoints(maker: async_sessionmaker[AsyncSession]) -> None:
    with recording(post_save) as events:
        async with maker() as session, session.begin():
            session.add(Order(item="outer"))
            async with session.begin_nested():
                session.add(Order(item="released"))
            assert events == []  # a released savepoint is not a commit
            savepoint = await session.begin_nested()
            session.add(Order(item="rolled back"))
            await session.flush()
            await savepoint.rollback()
            async with session.begin_nested(), session.begin_nested():
                session.add(Order(item="deep"))
        assert events == [saved("outer", True), saved("released", True), saved("deep", True)]


async def test_rolled_back_savepoint_keeps_the_outer_changes(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    async with maker() as session:
        session.add(Order(item="pizza"))
        await session.commit()
    with recording(post_save) as events:
        async with maker() as session, session.begin():
            order = (await session.scalars(select(Order))).one()
            order.item = "outer"
            await session.flush()
            savepoint = await session.begin_nested()
            order.quantity = 9
            await session.flush()
            await savepoint.rollback()
    assert events == [saved("outer", False, {"item": ("pizza", "outer")})]


async def test_delete(maker: async_sessionmaker[AsyncSession]) -> None:
    async with maker() as session:
        session.add(Order(item="pizza"))
        await session.commit()
    with recording(pre_delete, post_delete) as events:
        async with maker() as session:
            order = (await session.scalars(select(Order))).one()
            await session.delete(order)
            await session.flush()
            assert events == [("pre_delete", "Order", 1)]
            await session.commit()
    assert events == [("pre_delete", "Order", 1), ("post_delete", "Order", 1)]


async def test_delivery_is_robust_and_in_connection_order(
    maker: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    async def first(**kwargs: Any) -> None:
        calls.append("first")
        raise ValueError("kitchen printer on fire")

    def second(**kwargs: Any) -> None:
        calls.append("second")

    async def third(**kwargs: Any) -> None:
        calls.append("third")

    failures = post_save.statistics().failures
    for receiver in (first, second, third):
        post_save.connect(receiver, sender=Order)
    try:
        with caplog.at_level(logging.ERROR, logger="asignals"):
            async with maker() as session:
                session.add(Order(item="pizza"))
                await session.commit()  # does not raise
    finally:
        for receiver in (first, second, third):
            post_save.disconnect(receiver, sender=Order)
    assert calls == ["first", "second", "third"]
    assert "kitchen printer on fire" in caplog.text
    assert post_save.statistics().failures == failures + 1  # counted, for an alert
    async with maker() as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == 1


async def test_a_failing_pre_save_fails_the_flush(maker: async_sessionmaker[AsyncSession]) -> None:
    async def refuse(**kwargs: Any) -> None:
        raise ValueError("no anchovies")

    pre_save.connect(refuse, sender=Order)
    try:
        with recording(post_save) as events:
            async with maker() as session:
                session.add(Order(item="anchovies"))
                with pytest.raises(ValueError, match="no anchovies"):
                    await session.commit()
    finally:
        pre_save.disconnect(refuse, sender=Order)
    assert events == []
    async with maker() as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == 0


async def test_sessionmaker_begin_block_delivers_by_its_exit(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    with recording(post_save) as events:
        async with maker.begin() as session:
            session.add(Order(item="pizza"))
        assert events == [saved("pizza", True)]


async def test_receiver_may_write_through_its_own_session(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    async def audit(instance: Order, created: bool, **kwargs: Any) -> None:
        if created:
            async with maker() as other:
                other.add(Customer(name=f"audit {instance.item}"))
                await other.commit()

    post_save.connect(audit, sender=Order)
    try:
        async with maker() as session:
            session.add(Order(item="pizza"))
            await session.commit()
    finally:
        post_save.disconnect(audit, sender=Order)
    async with maker() as session:
        assert await session.scalar(select(Customer.name)) == "audit pizza"


async def test_many_to_many(maker: async_sessionmaker[AsyncSession]) -> None:
    with recording(m2m_changed) as events:
        async with maker() as session:
            hot, veg = Tag(name="hot"), Tag(name="veg")
            order = Order(item="pizza", tags=[hot, veg])
            session.add(order)
            await session.commit()
            post = [e for e in events if e[2].startswith("post")]
            assert post == [("m2m_changed", "Order", "post_add", "tags", frozenset({1, 2}))]
            events.clear()
            order = (await session.scalars(select(Order))).one()
            await session.refresh(order, ["tags"])
            order.tags.remove(hot)
            await session.commit()
            assert events == [
                ("m2m_changed", "Order", "pre_remove", "tags", frozenset({1})),
                ("m2m_changed", "Order", "post_remove", "tags", frozenset({1})),
            ]
            events.clear()
            await session.refresh(order, ["tags"])
            order.tags.clear()
            await session.commit()
    assert events == [
        ("m2m_changed", "Order", "pre_clear", "tags", frozenset({2})),
        ("m2m_changed", "Order", "post_clear", "tags", frozenset({2})),
    ]


async def test_many_to_one_change_is_in_update_fields(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    async with maker() as session:
        session.add(Order(item="pizza"))
        await session.commit()
    with recording(post_save) as events:
        async with maker() as session:
            order = (await session.scalars(select(Order))).one()
            await session.refresh(order, ["customer"])
            alice = Customer(name="alice")
            order.customer = alice
            await session.commit()
    [(_, sender, _, created, update_fields, changes)] = [e for e in events if e[1] == "Order"]
    assert (sender, created) == ("Order", False)
    assert update_fields == frozenset({"customer", "customer_id"})  # relationship and column
    assert changes["customer_id"] == (None, 1)
    assert changes["customer"][0] is None


async def test_bulk_and_core_statements_send_nothing(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    with recording() as events:
        async with maker() as session:
            await session.execute(insert(Order).values([{"item": "a"}, {"item": "b"}]))
            await session.execute(update(Order).values(quantity=4))
            await session.commit()
            connection = await session.connection()
            await connection.execute(insert(Order).values(item="c"))
            await session.commit()
    assert events == []


async def test_sender_filter(maker: async_sessionmaker[AsyncSession]) -> None:
    with recording(post_save, sender=Tag) as events:
        async with maker() as session:
            session.add_all([Order(item="pizza"), Tag(name="hot")])
            await session.commit()
    assert events == [("post_save", "Tag", "hot", True, None, {})]


async def test_untracked_sessions_send_nothing(async_url: str) -> None:
    engine = create_async_engine(async_url)
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.drop_all)
        await connection.run_sync(Base.metadata.create_all)
    sessions = async_sessionmaker(engine)
    try:
        with recording() as events:
            track(sessions)
            untrack(sessions)
            async with sessions() as session:
                session.add(Order(item="pizza"))
                await session.commit()
        assert events == []
    finally:
        await engine.dispose()


async def test_tracked_twice_and_through_its_class_delivers_once(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    track(maker)  # again: nothing changes
    track()  # every Session as well: still once per commit
    try:
        with recording(post_save) as events:
            async with maker() as session:
                session.add(Order(item="pizza"))
                await session.commit()
    finally:
        untrack()
    assert events == [saved("pizza", True)]
