"""Change capture: what changed on one object, read from SQLAlchemy's attribute history.

Used in the flush (`_flush`: the ``changes`` of ``pre_save``, what a flush wrote) and
before the commit (`_delivery`: which expired columns to load again).
"""

from __future__ import annotations

import weakref
from typing import Any

import sqlalchemy
from sqlalchemy.orm import Mapper
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.base import NO_VALUE, PassiveFlag
from sqlalchemy.orm.interfaces import MANYTOONE
from sqlalchemy.orm.state import InstanceState

from ._frames import Changes


class Shape:
    """What a mapped class looks like to us (computed once per mapper)."""

    __slots__ = ("columns", "many_to_many", "many_to_one")

    def __init__(self, mapper: Mapper[Any]) -> None:
        self.columns = frozenset(prop.key for prop in mapper.column_attrs)
        self.many_to_one = frozenset(
            rel.key for rel in mapper.relationships if rel.direction is MANYTOONE
        )
        self.many_to_many = tuple(
            (rel.key, rel.mapper.class_)
            for rel in mapper.relationships
            if rel.secondary is not None
        )


_shapes: weakref.WeakKeyDictionary[Mapper[Any], Shape] = weakref.WeakKeyDictionary()


def shape_of(state: InstanceState[Any]) -> Shape:
    mapper = state.mapper
    found = _shapes.get(mapper)
    if found is None:
        found = _shapes[mapper] = Shape(mapper)
    return found


def changes(state: InstanceState[Any], shape: Shape) -> Changes:
    """Column (and many-to-one) attributes changed since load or the last flush."""
    found: Changes = {}
    committed = state.committed_state
    if not committed:
        return found
    current = state.dict
    for key, old in committed.items():
        if key in shape.columns or key in shape.many_to_one:
            new = current.get(key)
            if old is NO_VALUE:
                old = None  # not loaded before it was set: unknown, reported as None
            elif old is new or old == new:
                continue
            found[key] = (old, new)
    return found


def primary_key(instance: Any) -> Any:
    state: InstanceState[Any] = instance_state(instance)
    key = state.mapper.primary_key_from_instance(instance)
    return key[0] if len(key) == 1 else tuple(key)


def known_key(instance: Any) -> Any:
    """The primary key of an object already in the database (``None`` for a new one)."""
    identity = sqlalchemy.inspect(instance).identity
    if identity is None:
        return None
    return identity[0] if len(identity) == 1 else identity


def m2m_history(state: InstanceState[Any], attribute: str) -> tuple[list[Any], list[Any], bool]:
    """(added, removed, now empty) for a collection, as the coming or current flush sees it."""
    history = state.get_history(attribute, PassiveFlag.PASSIVE_NO_INITIALIZE)
    added = list(history.added or ())
    removed = list(history.deleted or ())
    return added, removed, not added and not history.unchanged
