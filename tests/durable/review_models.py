"""Mapped classes of the review tests (tests/durable/test_outbox_hardening.py), in a MetaData
of their own."""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import JSON, Column, Enum, ForeignKey, LargeBinary, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class ReviewBase(DeclarativeBase):
    pass


class Role(enum.Enum):
    cook = "cook"
    waiter = "waiter"


class Chef(ReviewBase):
    __tablename__ = "review_chefs"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


class Shift(ReviewBase):
    """A composite primary key."""

    __tablename__ = "review_shifts"
    day: Mapped[int] = mapped_column(primary_key=True)
    cook: Mapped[str] = mapped_column(String(20), primary_key=True)
    hours: Mapped[int] = mapped_column(default=8)


menu_tags = Table(
    "review_menu_tags",
    ReviewBase.metadata,
    Column("menu_id", ForeignKey("review_menus.id"), primary_key=True),
    Column("tag_id", ForeignKey("review_tags.id"), primary_key=True),
)


class Tag(ReviewBase):
    __tablename__ = "review_tags"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


class Menu(ReviewBase):
    __tablename__ = "review_menus"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    chef_id: Mapped[int | None] = mapped_column(ForeignKey("review_chefs.id"), default=None)
    chef: Mapped[Chef | None] = relationship()
    tags: Mapped[list[Tag]] = relationship(secondary=menu_tags)
    notes: Mapped[Any] = mapped_column(JSON, nullable=True, default=None)
    role: Mapped[Role] = mapped_column(Enum(Role), default=Role.cook)
    logo: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, default=None)
