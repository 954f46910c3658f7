"""The commit's INSERT of outbox rows: the driver's own ``executemany`` when nothing
watches the connection's statements, SQLAlchemy's ``exec_driver_sql`` when something does
(echo, event listeners such as OpenTelemetry's SQLAlchemy instrumentation), and
SQLAlchemy's errors either way; which of a table's Outbox objects writes its rows; the
relays the commit wakes. These tests also guard what asignals.sqlalchemy._compat reads of
SQLAlchemy's private state for the INSERT: they fail if that changes."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy.exc
from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from asignals.sqlalchemy import Outbox, post_save, track, untrack
from asignals.sqlalchemy._compat import plain_executemany, unobserved
from asignals.sqlalchemy._outbox import _durable
from durable.conftest import reset
from durable.models import Base, Dish


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'insert.db'}"
    reset(url)
    engine = create_engine(url)
    yield engine
    engine.dispose()


def saved(*args: Any, **kwargs: Any) -> None:
    pass


def commit_a_dish(engine: Engine, outbox: Outbox, dishes: int = 1) -> int:
    """Commit new Dishes with a durable post_save receiver; the outbox's rows after it."""
    post_save.connect(saved, sender=Dish, outbox=outbox)
    try:
        return commit(engine, outbox, dishes)
    finally:
        post_save.disconnect(saved, sender=Dish)


def commit(engine: Engine, outbox: Outbox, dishes: int = 1) -> int:
    """Commit new Dishes; the outbox's rows after it."""
    maker = sessionmaker(engine)
    track(maker)
    try:
        with maker.begin() as session:
            session.add_all(Dish(name="soup") for _ in range(dishes))
    finally:
        untrack(maker)
    with engine.connect() as connection:
        rows: int = connection.execute(select(func.count()).select_from(outbox.table)).one()[0]
    return rows


def test_rows_are_written_by_the_driver_when_nothing_watches(engine: Engine) -> None:
    outbox = Outbox(engine, metadata=Base.metadata)
    with engine.connect() as connection:
        assert unobserved(connection)
        assert plain_executemany(connection.dialect)
    assert commit_a_dish(engine, outbox) == 1
    assert commit_a_dish(engine, outbox, dishes=3) == 4


def test_a_before_cursor_execute_listener_sees_the_insert(engine: Engine) -> None:
    outbox = Outbox(engine, metadata=Base.metadata)
    statements: list[str] = []

    def before(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        with engine.connect() as connection:
            assert not unobserved(connection)
        assert commit_a_dish(engine, outbox) == 1
    finally:
        event.remove(engine, "before_cursor_execute", before)
    assert any(statement.startswith("INSERT INTO asignals_outbox") for statement in statements)


def test_echo_logs_the_insert(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    outbox = Outbox(engine, metadata=Base.metadata)
    caplog.set_level(logging.INFO, "sqlalchemy.engine")
    with engine.connect() as connection:
        assert not unobserved(connection)
    assert commit_a_dish(engine, outbox) == 1
    assert "INSERT INTO asignals_outbox" in caplog.text


@pytest.mark.parametrize("watched", [False, True])
def test_a_failing_insert_raises_sqlalchemys_error(engine: Engine, watched: bool) -> None:
    outbox = Outbox(engine, metadata=Base.metadata)
    outbox.table.drop(engine)

    def before(*args: Any) -> None:
        pass

    if watched:
        event.listen(engine, "before_cursor_execute", before)
    try:
        with pytest.raises(sqlalchemy.exc.OperationalError, match="no such table"):
            commit_a_dish(engine, outbox)
    finally:
        if watched:
            event.remove(engine, "before_cursor_execute", before)
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Dish)).one()[0] == 0


def test_only_drivers_whose_executemany_is_plain_are_called_directly() -> None:
    """asyncpg prepares its cursor before each execution: its INSERT goes through
    SQLAlchemy."""
    found = {
        url: plain_executemany(create_async_engine(url).sync_engine.dialect)
        for url in ("sqlite+aiosqlite://", "postgresql+asyncpg://user@localhost/db")
    }
    assert found == {"sqlite+aiosqlite://": True, "postgresql+asyncpg://user@localhost/db": False}


def test_an_outbox_object_dropped_leaves_its_table_to_another_of_that_table(
    engine: Engine,
) -> None:
    """Outbox objects of one table share their durable receivers: when the one that wrote
    the table's rows is gone, another writes them."""
    outboxes = [Outbox(engine, metadata=Base.metadata) for _ in range(2)]
    for n, outbox in enumerate(outboxes):
        post_save.connect(saved, sender=Dish, outbox=outbox, dispatch_uid=n)
    try:
        assert commit(engine, outboxes[0]) == 1
        (writer,) = [other for other in _durable._writers() if other._key == outboxes[0]._key]
        outboxes.remove(writer)
        del writer
        gc.collect()
        assert commit(engine, outboxes[0]) == 2
    finally:
        for n in range(2):
            post_save.disconnect(sender=Dish, dispatch_uid=n)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_commit_wakes_the_running_relay_of_its_table_at_once(tmp_path: Path) -> None:
    """The relay waits for the commits of this process (or the poll interval, long here):
    a commit that wrote rows wakes it, and stops doing so when it stops."""
    path = tmp_path / "wake.db"
    reset(f"sqlite:///{path}")
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    outbox = Outbox(engine, metadata=Base.metadata, poll_interval=60)
    maker = async_sessionmaker(engine)
    track(maker)
    got = anyio.Event()

    def on_save(sender: type, instance: Dish, **kwargs: Any) -> None:
        got.set()

    post_save.connect(on_save, sender=Dish, outbox=outbox)
    try:
        async with outbox:
            async with maker.begin() as session:
                session.add(Dish(name="soup"))
            with anyio.fail_after(10):
                await got.wait()
        assert outbox._key not in _durable._relays
    finally:
        post_save.disconnect(on_save, sender=Dish)
        untrack(maker)
        await engine.dispose()
