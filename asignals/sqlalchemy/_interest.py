"""What the commit signals want of each mapped class, kept between flushes.

Asking ``has_listeners()`` of each class on every flush was most of what ``track()`` added
to a commit without receivers for the objects written: a flush (what it records) and a
commit (what it sends) look the answer up here instead. Asking the signals whether their
receivers changed was the rest: the signals say so themselves (a `Watch` of each, which
each signal updates on every connect, disconnect, death and send hook), so a flush only
reads what is kept here.
"""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy.orm import Mapper
from sqlalchemy.orm.state import InstanceState

from ._changes import Shape, shape_of
from ._outbox import _durable as durable
from ._seams import Watch, is_hooked
from ._signals import m2m_changed, post_delete, post_save

Interest = tuple[bool, bool, bool, Shape, tuple[bool, bool, bool]]
"""Whether post_save, post_delete and m2m_changed (for its many-to-many links) have
receivers for a class, durable ones (an outbox's) included: what a flush records of its
objects; the class's shape; and whether each of them reaches a receiver (or a send hook)
in this process: what a commit sends (a class whose receivers are all durable has nothing
to send then)."""

Table = weakref.WeakKeyDictionary[Mapper[Any], Interest]
"""Keyed by mapper, not by class: a class mapped again (after ``clear_mappers()`` or
``registry.dispose()``) has a new mapper, maybe with other relationships, and a disposed
mapper (with its class) is not kept alive by the table."""

Seen = dict[type, Interest]
"""One flush's (or one commit's) answers by class, asked of the table once per class: a
plain dict, which a weak one costs several times as much to ask, and which holds its
classes only while that flush lasts."""


class _Commit:
    """The commit signals' state, as attributes a flush reads without a call."""

    __slots__ = ("durable_version", "hooked", "idle", "table")

    def __init__(self) -> None:
        self.idle = True  # none of them has a receiver or a send hook (durable ones aside)
        self.hooked = False  # one of them has a send hook: ask afresh (see `interest`)
        self.table: Table = weakref.WeakKeyDictionary()
        self.durable_version: int | None = None  # the outboxes' receivers the table knows


def idle() -> bool:
    """Nothing to record: no receiver, send hook or durable receiver of a commit signal."""
    return commit.idle and not durable.active()


commit = _Commit()


class _Follow(Watch):
    """A `Watch` of one commit signal that renews `commit` whenever the signal changes."""

    __slots__ = ()

    def update(self) -> None:
        super().update()
        _renew()


_SIGNALS = (post_save, post_delete, m2m_changed)


def _renew() -> None:
    """A commit signal's receivers or hooks changed: answer every class afresh.

    The table is replaced, never emptied: a flush still filling the old one (in another
    thread) cannot leave an old answer in the new one."""
    commit.table = weakref.WeakKeyDictionary()
    commit.hooked = any(is_hooked(signal) for signal in _SIGNALS)
    commit.idle = all(follow.idle for follow in _follows)


_follows: tuple[_Follow, ...] = ()
_follows = tuple(_Follow(signal) for signal in _SIGNALS)  # the signals hold them weakly
_renew()


def interest() -> Table:
    """The table of what the commit signals want of each class, kept while no connection
    of theirs changed and none of them has a send hook.

    A hook (a test's capture, a bridge) can change what it observes in place: while one
    is installed, every flush and commit asks afresh.
    """
    if commit.hooked:
        return weakref.WeakKeyDictionary()
    if durable.active():  # durable receivers (an outbox's) are not the signals' own
        version = durable.version()
        if commit.durable_version != version:
            commit.table = weakref.WeakKeyDictionary()
            commit.durable_version = version
    return commit.table


def interest_in(table: Table, state: InstanceState[Any]) -> Interest:
    """What the commit signals want of *state*'s class: asked, and kept in *table*."""
    cls = state.class_
    shape = shape_of(state)
    many = bool(shape.many_to_many)
    here = (
        post_save.has_listeners(cls),
        post_delete.has_listeners(cls),
        many and m2m_changed.has_listeners(cls),
    )
    found = table[state.mapper] = (
        here[0] or post_save._wanted(cls),
        here[1] or post_delete._wanted(cls),
        here[2] or (many and m2m_changed._wanted(cls)),
        shape,
        here,
    )
    return found


def interest_of(table: Table, seen: Seen, state: InstanceState[Any]) -> Interest:
    """What the commit signals want of *state*'s class, asked of *table* once per class
    of a flush or commit (*seen*: its answers so far)."""
    found = table.get(state.mapper) or interest_in(table, state)
    seen[state.class_] = found
    return found
