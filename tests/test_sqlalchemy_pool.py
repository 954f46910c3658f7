"""Receivers run after the committing session gave its connection back to the pool: one
writing through a session of its own works with a pool of one connection, and with as many
requests at once as the pool has connections (SQLite file and PostgreSQL, AsyncSession and
Session)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from orm_models import Base, Customer, Order, real_sqlite_transactions
from sqlalchemy import create_engine, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from asignals.sqlalchemy import post_save, track, untrack

# A receiver that cannot get a connection waits this long, then its error is logged and
# the audit row is missing: the assertions below say so.
POOL = {"pool_timeout": 5}


@pytest.fixture(params=["sqlite-file", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(async url, sync url) of one empty database."""
    if request.param == "sqlite-file":
        path = tmp_path / "shop.db"
        yield f"sqlite+aiosqlite:///{path}", f"sqlite:///{path}"
    else:
        postgres = request.getfixturevalue("postgres")
        yield postgres.url("asyncpg"), postgres.url("psycopg")


def _create_tables(sync_url: str) -> None:
    engine = create_engine(sync_url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    engine.dispose()


@pytest.mark.parametrize(("pool_size", "requests"), [(1, 1), (2, 4)])
@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_async_receiver_writes_through_its_own_session_with_a_small_pool(
    database: tuple[str, str], pool_size: int, requests: int
) -> None:
    async_url, sync_url = database
    _create_tables(sync_url)
    engine = create_async_engine(async_url, pool_size=pool_size, max_overflow=0, **POOL)
    maker = async_sessionmaker(engine)
    track(maker)

    async def audit(instance: Order, created: bool, **kwargs: Any) -> None:
        async with maker() as own:
            own.add(Customer(name=f"audit {instance.item}"))
            await own.commit()

    async def request(number: int) -> None:
        async with maker() as session:
            session.add(Order(item=f"order {number}"))
            await session.commit()

    post_save.connect(audit, sender=Order)
    try:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                for number in range(requests):
                    group.start_soon(request, number)
        async with maker() as session:
            names = set(await session.scalars(select(Customer.name)))
    finally:
        post_save.disconnect(audit, sender=Order)
        untrack(maker)
        await engine.dispose()
    assert names == {f"audit order {number}" for number in range(requests)}


@pytest.mark.parametrize(("pool_size", "requests"), [(1, 1), (2, 4)])
def test_sync_receiver_writes_through_its_own_session_with_a_small_pool(
    database: tuple[str, str], pool_size: int, requests: int
) -> None:
    _, sync_url = database
    _create_tables(sync_url)
    engine = create_engine(sync_url, pool_size=pool_size, max_overflow=0, **POOL)
    if sync_url.startswith("sqlite"):
        real_sqlite_transactions(engine)
    maker = sessionmaker(engine)
    track(maker)
    errors: list[BaseException] = []

    def audit(instance: Order, created: bool, **kwargs: Any) -> None:
        with maker() as own:
            own.add(Customer(name=f"audit {instance.item}"))
            own.commit()

    def request(number: int) -> None:
        try:
            with maker.begin() as session:
                session.add(Order(item=f"order {number}"))
        except BaseException as exc:  # pragma: no cover - reported by the assertion below
            errors.append(exc)

    post_save.connect(audit, sender=Order)
    try:
        threads = [threading.Thread(target=request, args=(n,)) for n in range(requests)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        with maker() as session:
            names = set(session.scalars(select(Customer.name)))
            orders = session.scalar(select(func.count()).select_from(Order))
    finally:
        post_save.disconnect(audit, sender=Order)
        untrack(maker)
        engine.dispose()
    assert errors == []
    assert orders == requests
    assert names == {f"audit order {number}" for number in range(requests)}


def test_a_session_bound_to_a_connection_keeps_it_open(tmp_path: Path) -> None:
    """The connection a session was bound to is the caller's: it stays open for them."""
    engine = create_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    Base.metadata.create_all(engine)
    seen: list[str] = []

    def receiver(instance: Order, **kwargs: Any) -> None:
        seen.append(instance.item)

    track(Session)
    post_save.connect(receiver, sender=Order)
    try:
        with engine.connect() as connection:
            with Session(bind=connection) as session:
                session.add(Order(item="pizza"))
                session.commit()
            assert not connection.closed
            assert connection.scalar(select(func.count()).select_from(Order)) == 1
    finally:
        post_save.disconnect(receiver, sender=Order)
        untrack(Session)
        engine.dispose()
    assert seen == ["pizza"]
