"""Mapped classes and receivers shared by the asignals.sqlalchemy tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import anyio.lowlevel
from sqlalchemy import Column, Engine, ForeignKey, String, Table, event, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from asignals import AsyncSignal
from asignals.sqlalchemy import m2m_changed, post_delete, post_save, pre_delete, pre_save


class Base(DeclarativeBase):
    pass


order_tags = Table(
    "order_tags",
    Base.metadata,
    Column("order_id", ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
)


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


class Tag(Base):
    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


class Order(Base):
    __tablename__ = "orders"
    # SQLite reuses the largest rowid after a delete; the model test of
    # test_sqlalchemy_model tells rows apart by id, so ids are never reused.
    __table_args__ = ({"sqlite_autoincrement": True},)
    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str] = mapped_column(String(40))
    quantity: Mapped[int] = mapped_column(default=1)
    slug: Mapped[str | None] = mapped_column(String(80), default=None)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), default=None)
    customer: Mapped[Customer | None] = relationship()
    tags: Mapped[list[Tag]] = relationship(secondary=order_tags)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("tags", [])
        super().__init__(**kwargs)


class Line(Base):
    """A composite primary key: (order_no, line_no), in that order."""

    __tablename__ = "lines"
    order_no: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    line_no: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    item: Mapped[str] = mapped_column(String(40))


class Stamped(Base):
    """Columns the database computes: a server default, and one on every UPDATE."""

    __tablename__ = "stamped"
    id: Mapped[int] = mapped_column(primary_key=True)
    note: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime | None] = mapped_column(onupdate=func.now(), default=None)
    revision: Mapped[int] = mapped_column(server_default=text("1"))


def real_sqlite_transactions(engine: Engine) -> Engine:
    """SQLAlchemy's recipe for the sqlite3 driver, which would otherwise start no
    transaction before a SAVEPOINT (and then RELEASE commits everything)."""

    @event.listens_for(engine, "connect")
    def no_driver_transactions(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine


Event = tuple[Any, ...]
SESSION_SIGNALS = (pre_save, post_save, pre_delete, post_delete, m2m_changed)


def describe_send(signal: AsyncSignal, sender: Any, **payload: Any) -> Event:
    """What a receiver saw, read from the instance at that moment (attribute access included)."""
    instance = payload.get("instance")
    name = signal.name
    if name in ("pre_save", "post_save"):
        return (
            name,
            sender.__name__,
            getattr(instance, "item", getattr(instance, "name", None)),
            payload["created"],
            payload["update_fields"],
            payload["changes"],
        )
    if name in ("pre_delete", "post_delete"):
        return (name, sender.__name__, getattr(instance, "id", None))
    return (name, sender.__name__, payload["action"], payload["attribute"], payload["pk_set"])


@contextmanager
def recording(
    *signals: AsyncSignal, kind: str = "async", sender: Any = None
) -> Iterator[list[Event]]:
    """Connect a recording receiver (coroutine or sync) to each signal; yield the events."""
    events: list[Event] = []
    receivers: list[tuple[AsyncSignal, Callable[..., Any]]] = []
    for signal in signals or SESSION_SIGNALS:
        if kind == "async":

            async def receive(signal: AsyncSignal, sender: Any, **payload: Any) -> None:
                await anyio.lowlevel.checkpoint()
                events.append(describe_send(signal, sender, **payload))

        else:

            def receive(signal: AsyncSignal, sender: Any, **payload: Any) -> None:  # type: ignore[misc]
                events.append(describe_send(signal, sender, **payload))

        signal.connect(receive, sender=sender, weak=False)
        receivers.append((signal, receive))
    try:
        yield events
    finally:
        for signal, receive in receivers:
            signal.disconnect(receive, sender=sender)
