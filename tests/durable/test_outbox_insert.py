"""The commit's INSERT of outbox rows: the driver's own ``executemany`` when nothing
watches the connection's statements, SQLAlchemy's ``exec_driver_sql`` when something does
(echo, event listeners such as OpenTelemetry's SQLAlchemy instrumentation), and
SQLAlchemy's errors either way. These tests also guard what asignals.sqlalchemy._compat
reads of SQLAlchemy's private state for it: they fail if that changes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import sessionmaker

from asignals.sqlalchemy import Outbox, post_save, track, untrack
from asignals.sqlalchemy._compat import plain_executemany, unobserved
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
