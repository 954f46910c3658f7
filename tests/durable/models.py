"""Mapped classes for the outbox tests (imported by the test processes too)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Numeric, PickleType, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Kitchen(Base):
    __tablename__ = "durable_kitchens"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


class Dish(Base):
    __tablename__ = "durable_dishes"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2), default=Decimal("1.00"))
    kitchen_id: Mapped[int | None] = mapped_column(ForeignKey("durable_kitchens.id"), default=None)
    kitchen: Mapped[Kitchen | None] = relationship()
    extra: Mapped[Any] = mapped_column(PickleType, nullable=True, default=None)  # any object


class Seen(Base):
    """One row per receiver run, written by the receivers of the process tests."""

    __tablename__ = "durable_seen"
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    event: Mapped[str] = mapped_column(String(64))
    delivery: Mapped[str] = mapped_column(String(40))
    process: Mapped[str] = mapped_column(String(40))
