"""Tracking never breaks or changes a flush: what SQLAlchemy's own test suite found, run
with ``track()`` and a receiver on every model signal (``make test-sqlalchemy-suite``).

Each test maps its own classes (some of them twice), so they use registries of their own
rather than tests/orm_models.py, on SQLite and PostgreSQL, with a sync Session (and an
AsyncSession for the SQL expression).
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from orm_models import SESSION_SIGNALS, recording
from sqlalchemy import Column, Engine, ForeignKey, Integer, MetaData, String, Table
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session, registry, relationship
from sqlalchemy.orm.exc import FlushError

from asignals.sqlalchemy import post_save, track, untrack

metadata = MetaData()
boxes = Table(
    "boxes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("label", String(40), nullable=True),
    Column("flag", sa.Boolean, nullable=True),
)
labels = Table("labels", metadata, Column("id", Integer, primary_key=True))
box_labels = Table(
    "box_labels",
    metadata,
    Column("box_id", ForeignKey("boxes.id"), primary_key=True),
    Column("label_id", ForeignKey("labels.id"), primary_key=True),
)


class Box:
    """Mapped imperatively by each test (in a registry it disposes of afterwards)."""

    labels: Any
    label: Any
    flag: Any

    def __init__(self, **kwargs: Any) -> None:
        for name, value in kwargs.items():
            setattr(self, name, value)


class Label:
    pass


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'boxes.db'}"
    postgres = request.getfixturevalue("postgres")
    found: str = postgres.url("psycopg")
    return found


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = sa.create_engine(url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    track(Session)
    try:
        yield engine
    finally:
        untrack(Session)
        engine.dispose()


@pytest.fixture
def events() -> Iterator[list[Any]]:
    """A receiver on every model signal, for every sender."""
    with recording(*SESSION_SIGNALS, kind="sync") as found:
        yield found


def map_boxes(uselist: bool = True, with_labels: bool = True) -> registry:
    mapping = registry(metadata=metadata)
    mapping.map_imperatively(Label, labels)
    properties = {}
    if with_labels:
        properties["labels"] = relationship(Label, secondary=box_labels, uselist=uselist)
    mapping.map_imperatively(Box, boxes, properties=properties)
    return mapping


def test_a_class_mapped_again_without_its_many_to_many_flushes(
    engine: Engine, events: list[Any]
) -> None:
    first = map_boxes()
    with Session(engine) as session:
        session.add(Box(label="first", labels=[Label()]))
        session.commit()
    first.dispose()
    second = map_boxes(with_labels=False)
    try:
        with Session(engine) as session:
            session.add(Box(label="second"))
            session.commit()
    finally:
        second.dispose()
    assert ("post_save", "Box", None, True, None, {}) in events


def test_a_disposed_mapping_is_not_kept_alive(engine: Engine, events: list[Any]) -> None:
    class Gone:
        pass

    mapping = registry(metadata=MetaData())
    table = Table("gone", mapping.metadata, Column("id", Integer, primary_key=True))
    mapping.map_imperatively(Gone, table)
    mapping.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Gone())
        session.commit()
    mapper = weakref.ref(sa.inspect(Gone))
    mapping.dispose()
    gc.collect()
    assert mapper() is None


@pytest.mark.parametrize(
    ("attribute", "expression", "loaded"),
    [
        ("flag", sa.false(), False),
        ("label", sa.bindparam("label", "bound"), "bound"),
        ("label", sa.func.lower("MADE BY SQL"), "made by sql"),
    ],
)
def test_an_attribute_set_to_a_sql_expression_flushes(
    engine: Engine, events: list[Any], attribute: str, expression: Any, loaded: Any
) -> None:
    mapping = map_boxes()
    try:
        with Session(engine) as session:
            box = Box()
            session.add(box)
            session.commit()
            events.clear()
            setattr(box, attribute, expression)
            session.commit()
            assert getattr(box, attribute) == loaded
    finally:
        mapping.dispose()
    [pre, post] = [e for e in events if e[0] in ("pre_save", "post_save")]
    assert pre[3:5] == post[3:5] == (False, frozenset({attribute}))


def test_a_uselist_false_many_to_many_set_to_none_flushes(
    engine: Engine, events: list[Any]
) -> None:
    mapping = map_boxes(uselist=False)
    try:
        with Session(engine) as session:
            box = Box(labels=Label())
            session.add(box)
            session.commit()
            box.labels = None
            session.commit()
            links = session.scalar(sa.select(sa.func.count()).select_from(box_labels))
    finally:
        mapping.dispose()
    assert links == 0
    assert [e[2] for e in events if e[0] == "m2m_changed"] == [
        "pre_add",
        "post_add",
        "pre_clear",
        "post_clear",
    ]


def test_none_in_a_collection_keeps_sqlalchemys_own_flush_error(
    engine: Engine, events: list[Any]
) -> None:
    mapping = map_boxes()
    try:
        with Session(engine) as session:
            session.add(Box(labels=[None]))
            with pytest.raises(FlushError, match="None"):
                session.commit()
    finally:
        mapping.dispose()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_sql_expression_flushes_in_an_async_session(tmp_path: Path) -> None:
    from sqlalchemy.ext.asyncio import AsyncSession

    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'boxes.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    mapping = map_boxes()
    track(AsyncSession)
    try:
        with recording(*SESSION_SIGNALS, kind="sync") as events:
            async with AsyncSession(engine) as session:
                box = Box(label=None)
                session.add(box)
                await session.commit()
                box.label = sa.literal("made by SQL") + "!"
                await session.commit()
    finally:
        untrack(AsyncSession)
        mapping.dispose()
        await engine.dispose()
    assert [e[0] for e in events] == ["pre_save", "post_save", "pre_save", "post_save"]


def test_a_sql_expression_reaches_a_receiver_of_that_class_only(engine: Engine) -> None:
    """Only the classes post_save has receivers for are watched for SQL expressions."""
    mapping = map_boxes()
    seen: list[Any] = []

    def saved(instance: Box, changes: Any, **kwargs: Any) -> None:
        seen.append(changes)

    post_save.connect(saved, sender=Box)
    try:
        with Session(engine, expire_on_commit=False) as session:  # "old" stays loaded
            box = Box(label="old")
            session.add(box)
            session.commit()
            box.label = sa.func.upper("new")
            session.commit()
    finally:
        post_save.disconnect(saved, sender=Box)
        mapping.dispose()
    assert seen == [{}, {"label": ("old", "NEW")}]
