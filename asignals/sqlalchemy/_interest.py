"""What the commit signals want of each mapped class, kept between flushes.

Asking ``has_listeners()`` of each class on every flush was most of what ``track()`` added
to a commit without receivers for the objects written: a flush (what it records) and a
commit (what it sends) look the answer up here instead.
"""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy.orm import Mapper
from sqlalchemy.orm.state import InstanceState

from ._changes import Shape, shape_of
from ._signals import m2m_changed, post_delete, post_save

Interest = tuple[bool, bool, bool, Shape]
"""Whether post_save, post_delete and m2m_changed (for its many-to-many links) have
receivers for a class, and the class's shape: what a flush records of its objects and what
a commit sends."""

Table = weakref.WeakKeyDictionary[Mapper[Any], Interest]
"""Keyed by mapper, not by class: a class mapped again (after ``clear_mappers()`` or
``registry.dispose()``) has a new mapper, maybe with other relationships, and a disposed
mapper (with its class) is not kept alive by the table."""

_interests: tuple[tuple[int, ...], Table] = ((), weakref.WeakKeyDictionary())


def interest() -> Table:
    """The table of what the commit signals want of each class, kept while no connection
    of theirs changed and none of them has a send hook.

    The table is replaced, never emptied, when something changed: a flush still filling
    the old one (in another thread) cannot leave an old answer in the new one.
    """
    global _interests
    if post_save._hooked() or post_delete._hooked() or m2m_changed._hooked():
        # A hook (a test's capture, a bridge) can change what it observes in place: ask
        # afresh on every flush and commit while one is installed.
        return weakref.WeakKeyDictionary()
    version = (
        post_save._plans_version(),
        post_delete._plans_version(),
        m2m_changed._plans_version(),
    )
    known, table = _interests
    if known != version:
        table = weakref.WeakKeyDictionary()
        _interests = (version, table)
    return table


def interest_in(table: Table, state: InstanceState[Any]) -> Interest:
    """What the commit signals want of *state*'s class: asked, and kept in *table*."""
    cls = state.class_
    shape = shape_of(state)
    links = bool(shape.many_to_many) and m2m_changed._wanted(cls)
    found = table[state.mapper] = (post_save._wanted(cls), post_delete._wanted(cls), links, shape)
    return found
