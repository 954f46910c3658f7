"""Every column attribute is readable in a post_save receiver, those the database computed
in the commit's own flush included (``onupdate=func.now()``, server defaults), with
AsyncSession and Session on SQLite and PostgreSQL; they are loaded in one SELECT per object,
and only for objects whose class has a receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from orm_models import Base, Order, Stamped, real_sqlite_transactions
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from asignals.sqlalchemy import post_save, track, untrack


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(async url, sync url) of one database."""
    if request.param == "sqlite":
        path = tmp_path / "shop.db"
        return f"sqlite+aiosqlite:///{path}", f"sqlite:///{path}"
    postgres = request.getfixturevalue("postgres")
    return postgres.url("asyncpg"), postgres.url("psycopg")


@pytest.fixture
def engine(urls: tuple[str, str]) -> Iterator[Engine]:
    engine = create_engine(urls[1])
    if urls[1].startswith("sqlite"):
        real_sqlite_transactions(engine)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def selects_after_update(engine: Engine, table: str) -> list[str]:
    """The SELECTs of *table* the engine runs after its next UPDATE of *table* (before it,
    SQLAlchemy itself loads an object expired by the previous commit)."""
    found: list[str] = []
    updated: list[bool] = []

    @event.listens_for(engine, "before_cursor_execute")
    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith(f"UPDATE {table}"):
            updated.append(True)
        elif updated and statement.startswith("SELECT") and f"FROM {table}" in statement:
            found.append(statement)

    return found


Seen = list[tuple[bool, str, Any, Any, int]]


def reader(seen: Seen) -> Any:
    def read(instance: Stamped, created: bool, **kwargs: Any) -> None:
        seen.append(
            (created, instance.note, instance.created_at, instance.updated_at, instance.revision)
        )

    return read


def test_sync_receiver_reads_the_columns_the_commit_computed(engine: Engine) -> None:
    maker = sessionmaker(engine)
    track(maker)
    seen: Seen = []
    read = reader(seen)
    post_save.connect(read, sender=Stamped)
    try:
        with maker() as session:
            stamped = Stamped(note="new")
            session.add(stamped)
            session.commit()
            stamped.note = "changed"
            selects = selects_after_update(engine, "stamped")
            session.commit()  # the UPDATE sets updated_at; its flush expires it
    finally:
        post_save.disconnect(read, sender=Stamped)
        untrack(maker)
    [(created, note, created_at, _, revision), update_seen] = seen
    assert (created, note, revision) == (True, "new", 1)
    assert isinstance(created_at, datetime)
    assert update_seen[:2] == (False, "changed")
    assert isinstance(update_seen[3], datetime)
    assert len(selects) == 1  # one SELECT loads what the flush expired, in the transaction


def test_nothing_is_loaded_for_objects_without_receivers(engine: Engine) -> None:
    maker = sessionmaker(engine)
    track(maker)
    seen: list[str] = []

    def order_saved(instance: Order, **kwargs: Any) -> None:
        seen.append(instance.item)

    post_save.connect(order_saved, sender=Order)
    try:
        with maker() as session:
            stamped = Stamped(note="new")
            session.add_all([stamped, Order(item="pizza")])
            session.commit()
            selects = selects_after_update(engine, "stamped")
            stamped.note = "changed"
            session.commit()
    finally:
        post_save.disconnect(order_saved, sender=Order)
        untrack(maker)
    assert seen == ["pizza"]
    assert selects == []


@pytest_asyncio.fixture
async def async_maker(
    urls: tuple[str, str], engine: Engine
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async_engine = create_async_engine(urls[0])
    maker = async_sessionmaker(async_engine)  # expire_on_commit=True
    track(maker)
    try:
        yield maker
    finally:
        untrack(maker)
        await async_engine.dispose()


@pytest.mark.asyncio
async def test_async_receiver_reads_the_columns_the_commit_computed(
    async_maker: async_sessionmaker[AsyncSession],
) -> None:
    seen: Seen = []
    read = reader(seen)

    async def read_async(instance: Stamped, created: bool, **kwargs: Any) -> None:
        read(instance=instance, created=created)

    post_save.connect(read_async, sender=Stamped)
    try:
        async with async_maker() as session:
            stamped = Stamped(note="new")
            session.add(stamped)
            await session.commit()
            stamped.note = "changed"
            await session.commit()
    finally:
        post_save.disconnect(read_async, sender=Stamped)
    [(created, note, created_at, _, revision), update_seen] = seen
    assert (created, note, revision) == (True, "new", 1)
    assert isinstance(created_at, datetime)
    assert update_seen[:2] == (False, "changed")
    assert isinstance(update_seen[3], datetime)
