"""Durable receivers and ``outbox.send``: written in the committing transaction, delivered
after it by the relay, never on rollback (SQLite file and PostgreSQL)."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import anyio
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from asignals import AsyncSignal, Delivery, current_delivery, receiver
from asignals.sqlalchemy import (
    Outbox,
    OutboxStatistics,
    post_delete,
    post_save,
    track,
    untrack,
)
from durable.conftest import reset
from durable.models import Base, Dish, Kitchen
from durable.support import until

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # SQLAlchemy's async engines need asyncio (trio: a sync engine, below)


order_paid = AsyncSignal("durable_order_paid")


class Shop:
    """An application's environment for one test: engine, sessions, outbox, events."""

    def __init__(self, engine: AsyncEngine, outbox: Outbox) -> None:
        self.engine = engine
        self.outbox = outbox
        self.maker = async_sessionmaker(engine, expire_on_commit=False)
        self.events: list[tuple[Any, ...]] = []
        self.arrived = anyio.Event()

    def note(self, *event: Any) -> None:
        self.events.append(event)
        self.arrived.set()

    async def wait(self, count: int, seconds: float = 20) -> list[tuple[Any, ...]]:
        with anyio.fail_after(seconds):
            while len(self.events) < count:
                await self.arrived.wait()
                self.arrived = anyio.Event()
        return self.events

    async def drained(self) -> bool:
        return await self.rows() == 0

    async def one_dead(self) -> bool:
        return (await self.outbox.statistics()).dead == 1

    async def rows(self) -> int:
        async with self.engine.connect() as connection:
            return (
                await connection.execute(select(func.count()).select_from(self.outbox.table))
            ).scalar_one()


@asynccontextmanager
async def shop(database: tuple[str, str], **options: Any) -> AsyncIterator[Shop]:
    async_url, sync_url = database
    engine = create_async_engine(async_url)
    outbox = Outbox(engine, metadata=Base.metadata, poll_interval=0.2, **options)
    reset(sync_url)
    app = Shop(engine, outbox)
    track(app.maker)
    try:
        yield app
    finally:
        untrack(app.maker)
        await engine.dispose()


async def test_a_durable_post_save_is_delivered_after_the_commit(database: tuple[str, str]) -> None:
    async with shop(database) as app:
        inline: list[str] = []

        @receiver(post_save, sender=Dish, outbox=app.outbox)
        async def notify_kitchen(
            sender: type, instance: Dish, created: bool, **kwargs: Any
        ) -> None:
            delivery = current_delivery()
            app.note(
                sender, instance.name, created, kwargs["update_fields"], kwargs["changes"], delivery
            )

        def in_memory(sender: type, instance: Dish, **kwargs: Any) -> None:
            inline.append(instance.name)

        post_save.connect(in_memory, sender=Dish)
        try:
            async with app.outbox:
                async with app.maker.begin() as session:
                    session.add(Dish(name="soup", price=Decimal("4.50")))
                assert inline == ["soup"]  # the in-memory receiver ran inside commit()
                (created,) = await app.wait(1)
                async with app.maker.begin() as session:
                    dish = (await session.scalars(select(Dish))).one()
                    dish.price = Decimal("5.00")
                    dish.name = "broth"
                _, updated = await app.wait(2)
                await until(app.drained)  # delivered rows are deleted
        finally:
            post_save.disconnect(in_memory, sender=Dish)
            assert post_save.disconnect(notify_kitchen, sender=Dish)
        assert created[:5] == (Dish, "soup", True, None, {})
        delivery = created[5]
        assert isinstance(delivery, Delivery)
        assert (delivery.mode, delivery.signal, delivery.delivery_count) == (
            "outbox",
            "post_save",
            1,
        )
        assert updated[:4] == (Dish, "broth", False, frozenset({"name", "price"}))
        assert updated[4] == {
            "name": ("soup", "broth"),
            "price": (Decimal("4.50"), Decimal("5.00")),
        }
        assert inline == ["soup", "broth"]  # the durable receiver is not called in memory


async def test_rollbacks_write_no_row(database: tuple[str, str]) -> None:
    async with shop(database) as app:

        @receiver(post_save, sender=Dish, outbox=app.outbox, weak=False)
        def notify_kitchen(sender: type, instance: Dish, **kwargs: Any) -> None:
            app.note(instance.name)

        try:
            async with app.maker() as session:  # a transaction rolled back
                session.add(Dish(name="rolled back"))
                await session.flush()
                await session.rollback()
            async with app.maker.begin() as session:  # a savepoint rolled back, one released
                async with session.begin_nested() as savepoint:
                    session.add(Dish(name="in a rolled-back savepoint"))
                    await session.flush()
                    await savepoint.rollback()
                async with session.begin_nested():
                    session.add(Dish(name="in a released savepoint"))
                session.add(Dish(name="outside"))
            assert await app.rows() == 2  # written, nobody delivering yet
            async with app.outbox:
                events = await app.wait(2)
                await anyio.sleep(0.5)  # nothing else comes
        finally:
            post_save.disconnect(notify_kitchen, sender=Dish)
        assert sorted(events) == [("in a released savepoint",), ("outside",)]
        assert len(app.events) == 2


async def test_one_row_per_object_per_transaction_with_merged_changes(
    database: tuple[str, str],
) -> None:
    async with shop(database) as app:
        async with app.maker.begin() as session:
            session.add(Dish(name="tea", price=Decimal("2.00")))

        @receiver(post_save, sender=Dish, outbox=app.outbox, weak=False)
        def changed(sender: type, instance: Dish, **kwargs: Any) -> None:
            app.note(kwargs["changes"])

        try:
            async with app.maker.begin() as session:
                dish = (await session.scalars(select(Dish))).one()
                dish.price = Decimal("2.50")
                await session.flush()
                dish.price = Decimal("3.00")
                await session.flush()
                dish.name = "green tea"
            assert await app.rows() == 1
            async with app.outbox:
                (event,) = await app.wait(1)
        finally:
            post_save.disconnect(changed, sender=Dish)
        assert event == (
            {"price": (Decimal("2.00"), Decimal("3.00")), "name": ("tea", "green tea")},
        )


async def test_durable_post_delete_and_m2m_changed(database: tuple[str, str]) -> None:
    async with shop(database) as app:
        async with app.maker.begin() as session:
            session.add_all([Kitchen(id=1, name="north"), Dish(id=7, name="stew", kitchen_id=1)])

        @receiver(post_delete, sender=Dish, outbox=app.outbox, weak=False)
        def deleted(sender: type, instance: Dish, **kwargs: Any) -> None:
            app.note("deleted", type(instance), instance.id, instance.name, instance.kitchen_id)

        @receiver(post_save, sender=Dish, outbox=app.outbox, weak=False)
        def moved(sender: type, instance: Dish, changes: dict[str, Any], **kwargs: Any) -> None:
            app.note("moved", changes)

        try:
            async with app.maker.begin() as session:
                dish = await session.get(Dish, 7)
                assert dish is not None
                kitchen = Kitchen(id=2, name="south")
                session.add(kitchen)
                dish.kitchen_id = 2
            async with app.maker.begin() as session:
                dish = await session.get(Dish, 7)
                await session.delete(dish)
            async with app.outbox:
                events = await app.wait(2)
        finally:
            post_delete.disconnect(deleted, sender=Dish)
            post_save.disconnect(moved, sender=Dish)
        assert events == [("moved", {"kitchen_id": (1, 2)}), ("deleted", Dish, 7, "stew", 2)]


async def test_outbox_send_reaches_the_signals_receivers_after_the_commit(
    database: tuple[str, str],
) -> None:
    async with shop(database) as app:

        async def on_paid(sender: Any, order_id: int, amount: Decimal, **kwargs: Any) -> None:
            app.note(sender, order_id, amount, current_delivery())

        order_paid.connect(on_paid)
        try:
            async with app.outbox:
                async with app.maker.begin() as session:
                    session.add(Dish(name="pie"))
                    await session.flush()
                    app.outbox.send(session, order_paid, "shop", order_id=1, amount=Decimal("9.99"))
                    assert app.events == []  # never inside the transaction
                (event,) = await app.wait(1)
                async with app.maker.begin() as session:
                    async with session.begin_nested() as savepoint:
                        app.outbox.send(session, order_paid, "shop", order_id=2, amount=Decimal(0))
                        await savepoint.rollback()
                    app.outbox.send(session, order_paid, None, order_id=3, amount=Decimal(1))
                (_, event3) = await app.wait(2)
        finally:
            order_paid.disconnect(on_paid)
        assert event[:3] == ("shop", 1, Decimal("9.99"))
        assert event[3].mode == "outbox"
        assert event[3].signal == "durable_order_paid"
        assert event3[:3] == (None, 3, Decimal(1))


async def test_outbox_send_from_a_sync_session_in_a_def_endpoint(database: tuple[str, str]) -> None:
    _, sync_url = database
    async with shop(database) as app:
        sync_engine = create_engine(sync_url)
        maker = sessionmaker(sync_engine)
        track(maker)
        threads: list[str] = []

        def endpoint() -> None:  # what FastAPI runs in a worker thread for a `def` endpoint
            threads.append(threading.current_thread().name)
            with maker.begin() as session:
                session.add(Dish(name="toast"))
                app.outbox.send(session, order_paid, "shop", order_id=5, amount=Decimal(2))

        def on_paid(sender: Any, order_id: int, **kwargs: Any) -> None:
            app.note(order_id, threading.current_thread().name)

        order_paid.connect(on_paid)
        try:
            async with app.outbox:
                await anyio.to_thread.run_sync(endpoint)
                (event,) = await app.wait(1)
        finally:
            order_paid.disconnect(on_paid)
            untrack(maker)
            sync_engine.dispose()
        assert event[0] == 5
        assert event[1] != threads[0]  # delivered by the relay, not in the committing thread


async def test_a_failing_receiver_is_retried_with_backoff_then_kept_dead_then_requeued(
    database: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    async with shop(database, max_attempts=3, backoff=0.05, max_backoff=0.1) as app:
        attempts: list[tuple[str, int, float]] = []
        healthy = False

        @receiver(post_save, sender=Dish, outbox=app.outbox, weak=False)
        def flaky(sender: type, instance: Dish, **kwargs: Any) -> None:
            delivery = current_delivery()
            assert delivery is not None
            attempts.append((delivery.id, delivery.delivery_count, anyio.current_time()))
            app.note(delivery.delivery_count)
            if not healthy:
                raise RuntimeError("the kitchen printer is offline")

        caplog.set_level(logging.ERROR)
        try:
            async with app.outbox:
                async with app.maker.begin() as session:
                    session.add(Dish(name="cake"))
                await app.wait(3)
                await until(app.one_dead)
                await anyio.sleep(0.3)
                assert len(attempts) == 3  # max_attempts: never a fourth run
                stats = await app.outbox.statistics()
                (dead,) = await app.outbox.dead_letters()
                healthy = True
                assert await app.outbox.requeue([dead.id]) == 1
                await app.wait(4)
                await until(app.drained)
                after = await app.outbox.statistics()
        finally:
            post_save.disconnect(flaky, sender=Dish)
        assert {event_id for event_id, _, _ in attempts} == {dead.id}  # one id throughout
        assert [count for _, count, _ in attempts] == [1, 2, 3, 1]
        gaps = [b - a for (_, _, a), (_, _, b) in itertools.pairwise(attempts[:3])]
        assert gaps[0] >= 0.05
        assert gaps[1] >= 0.1
        assert stats == OutboxStatistics(
            pending=0, dead=1, oldest_pending_age=None, delivered=0, retried=2
        )
        assert (dead.signal, dead.attempts) == ("post_save", 3)
        assert dead.sender == "durable.models.Dish"
        assert dead.error is not None
        assert "RuntimeError: the kitchen printer is offline" in dead.error
        assert dead.failed_at is not None
        assert (after.pending, after.dead, after.delivered, after.retried) == (0, 0, 1, 2)
        assert "kept as dead" in caplog.text


async def test_a_commit_without_a_running_relay_leaves_its_rows(database: tuple[str, str]) -> None:
    async with shop(database) as app:

        @receiver(post_save, sender=Dish, outbox=app.outbox, weak=False)
        def notify(sender: type, instance: Dish, **kwargs: Any) -> None:
            app.note(instance.name)

        try:
            async with app.maker.begin() as session:
                session.add(Dish(name="bread"))
            await anyio.sleep(0.3)
            stats = await app.outbox.statistics()
            assert (stats.pending, app.events) == (1, [])
            assert stats.oldest_pending_age is not None
            assert stats.oldest_pending_age >= 0
            async with app.outbox:  # a relay started later (or elsewhere) delivers it
                assert await app.wait(1) == [("bread",)]
        finally:
            post_save.disconnect(notify, sender=Dish)


async def test_no_durable_receiver_no_statement(database: tuple[str, str]) -> None:
    async with shop(database) as app:
        statements: list[str] = []
        from sqlalchemy import event

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        event.listen(app.engine.sync_engine, "before_cursor_execute", count)

        def inline(sender: type, instance: Dish, **kwargs: Any) -> None:
            pass

        post_save.connect(inline, sender=Dish)
        try:
            async with app.maker.begin() as session:
                session.add(Dish(name="salad"))
        finally:
            post_save.disconnect(inline, sender=Dish)
        assert not any(app.outbox.table.name in statement for statement in statements)
        assert len([s for s in statements if s.startswith("INSERT")]) == 1


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_the_relay_runs_on_trio_with_a_sync_engine(database: tuple[str, str]) -> None:
    _, sync_url = database
    reset(sync_url)
    engine = create_engine(sync_url)
    outbox = Outbox(engine, metadata=Base.metadata, poll_interval=0.2)
    maker = sessionmaker(engine)
    track(maker)
    seen: list[tuple[str, str]] = []
    done = anyio.Event()

    @receiver(post_save, sender=Dish, outbox=outbox, weak=False)
    async def notify(sender: type, instance: Dish, **kwargs: Any) -> None:
        seen.append((instance.name, threading.current_thread().name))
        done.set()

    def commit() -> None:
        with maker.begin() as session:
            session.add(Dish(name="noodles"))

    try:
        async with outbox:
            await anyio.to_thread.run_sync(commit)
            with anyio.fail_after(20):
                await done.wait()
    finally:
        post_save.disconnect(notify, sender=Dish)
        untrack(maker)
        engine.dispose()
    assert seen[0][0] == "noodles"
