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
from sqlalchemy.orm.base import LoaderCallableStatus, PassiveFlag
from sqlalchemy.orm.interfaces import MANYTOONE
from sqlalchemy.orm.state import InstanceState

from ._frames import Changes


class Shape:
    """What a mapped class looks like to us (computed once per mapper)."""

    __slots__ = ("changeable", "columns", "many_to_many", "many_to_one")

    def __init__(self, mapper: Mapper[Any]) -> None:
        self.columns = frozenset(prop.key for prop in mapper.column_attrs)
        self.many_to_one = frozenset(
            rel.key for rel in mapper.relationships if rel.direction is MANYTOONE
        )
        self.changeable = self.columns | self.many_to_one  # what `changes` reports
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


def changes(
    state: InstanceState[Any], shape: Shape, current: dict[str, Any] | None = None
) -> Changes:
    """Column (and many-to-one) attributes changed since load or the last flush
    (*current*: the object's ``__dict__``, when the caller has the object at hand)."""
    found: Changes = {}
    committed = state.committed_state
    if not committed:
        return found
    if current is None:
        current = state.dict
    changeable = shape.changeable
    for key in committed:  # (cheaper than .items() for the one or two keys usual here)
        if key in changeable:
            old = committed[key]
            # Absent after a flush: set to a SQL expression, which the flush ran and then
            # expired; the value is loaded before delivery (`_delivery`).
            new = current.get(key, UNREAD)
            if type(old) is LoaderCallableStatus:  # NO_VALUE, PASSIVE_NO_RESULT, ...
                old = None  # not loaded before it was set: unknown, reported as None
            elif old is new:
                continue
            else:
                try:  # `same()`, inline: this runs for every changed attribute
                    if old == new:
                        continue
                except Exception:  # a SQL expression (sa.false()), or an odd type's ==
                    pass
            found[key] = (old, new)
    return found


class _Unread:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<unread>"


UNREAD: Any = _Unread()
"""The new value of a change the flush wrote from a SQL expression, until it is loaded."""


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
    # None is no related row (a uselist=False collection set to None, or appended to a
    # list, which SQLAlchemy's own flush then refuses with its FlushError): not sent.
    added = [related for related in history.added or () if related is not None]
    removed = [related for related in history.deleted or () if related is not None]
    return added, removed, not added and not history.unchanged


def m2m_written(
    flush_context: Any, state: InstanceState[Any], attribute: str
) -> tuple[list[Any], list[Any], bool]:
    """(added, removed, now empty) for a collection, as the flush that just ran wrote it.

    The flush's own view (its unit of work keeps each history it used): after it, the
    attribute's history may already read as committed (a ``uselist=False`` collection).
    """
    history = flush_context.get_attribute_history(
        state, attribute, PassiveFlag.PASSIVE_NO_INITIALIZE
    )
    added = _objects(history.added)
    return added, _objects(history.deleted), not added and not history.unchanged


def _objects(states: Any) -> list[Any]:
    """The objects of *states* (None, no related row, left out; so is one collected)."""
    return [obj for state in states or () if state is not None and (obj := state.obj()) is not None]
