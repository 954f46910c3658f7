"""A pre_save receiver that raises refuses the save: the flush writes nothing, commit()
raises, and the transaction is as it was, as when a Django pre_save receiver raises inside
``atomic()``. Leaving a ``begin()`` block on the error rolls all of it back and delivers
nothing; catching it and committing commits (and delivers) only the earlier flushes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from orm_models import Base, Order, real_sqlite_transactions, recording
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from asignals.sqlalchemy import post_save, pre_save, track, untrack


class Refused(Exception):
    pass


def refuse_anchovies(instance: Order, **kwargs: Any) -> None:
    if instance.item == "anchovies":
        raise Refused("no anchovies")


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
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
    pre_save.connect(refuse_anchovies, sender=Order)
    yield engine
    pre_save.disconnect(refuse_anchovies, sender=Order)
    engine.dispose()


def items(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(select(Order.item).order_by(Order.id)))


def pizza_then_anchovies(maker: sessionmaker[Session]) -> None:
    with maker.begin() as session:
        session.add(Order(item="pizza"))
        session.flush()
        session.add(Order(item="anchovies"))  # refused by the commit's flush


async def pizza_then_anchovies_async(maker: async_sessionmaker[AsyncSession]) -> None:
    async with maker.begin() as session:
        session.add(Order(item="pizza"))
        await session.flush()
        session.add(Order(item="anchovies"))


def test_leaving_the_begin_block_rolls_back_everything(engine: Engine) -> None:
    maker = sessionmaker(engine)
    track(maker)
    try:
        with recording(post_save, kind="sync") as events, pytest.raises(Refused):
            pizza_then_anchovies(maker)
    finally:
        untrack(maker)
    assert events == []
    assert items(engine) == []


def test_a_caught_refusal_leaves_the_earlier_flushes_to_commit(engine: Engine) -> None:
    maker = sessionmaker(engine)
    track(maker)
    try:
        with recording(post_save, kind="sync") as events, maker() as session:
            session.add(Order(item="pizza"))
            session.flush()
            refused = Order(item="anchovies")
            session.add(refused)
            with pytest.raises(Refused):
                session.commit()
            assert refused in session.new  # still pending: a new flush asks again
            session.expunge(refused)
            session.commit()
    finally:
        untrack(maker)
    assert [e[2] for e in events] == ["pizza"]
    assert items(engine) == ["pizza"]


@pytest.mark.asyncio
async def test_async_session_refusal(urls: tuple[str, str], engine: Engine) -> None:
    async_engine = create_async_engine(urls[0])
    maker = async_sessionmaker(async_engine)
    track(maker)
    try:
        with recording(post_save, kind="sync") as events:
            with pytest.raises(Refused):
                await pizza_then_anchovies_async(maker)
            assert items(engine) == []
            async with maker() as session:
                session.add(Order(item="pizza"))
                await session.flush()
                refused = Order(item="anchovies")
                session.add(refused)
                with pytest.raises(Refused):
                    await session.commit()
                session.expunge(refused)
                await session.commit()
    finally:
        untrack(maker)
        await async_engine.dispose()
    assert [e[2] for e in events] == ["pizza"]
    assert items(engine) == ["pizza"]
