"""Tracking: which sessions send the model signals, and the session events listened to.

`track` and `untrack` choose the Session classes (patching an async_sessionmaker or an
AsyncSession class to give it one of its own); `listen` adds the events a signal needs
once it is in use. The listeners are installed on each tracked class that has no tracked
superclass, and on nothing else, so a commit costs exactly what it costs untracked until
some session signal has a receiver (or a capture).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapper, Session, sessionmaker

FLUSH_EVENTS = frozenset({"before_flush"})  # where pre_save, pre_delete, pre_* m2m are sent
COMMIT_EVENTS = frozenset(  # where post_save, post_delete, post_* m2m are recorded and sent
    {
        "after_flush",
        "after_flush_postexec",
        "before_commit",
        "after_commit",
        "after_transaction_end",
    }
)
BULK_EVENTS = COMMIT_EVENTS | {"do_orm_execute"}  # post_bulk_*: recorded, then sent

_Target = Any
"""What `track` accepts: a Session class, a sessionmaker, an async_sessionmaker, an
AsyncSession class (``None``: every Session)."""

_tracked: dict[int, tuple[_Target, type[Session], Callable[[], None]]] = {}
# id(target) -> (target, the Session class listened on, undo of any patch)
_lock = threading.Lock()

_handlers: dict[str, Callable[..., None]] = {}
"""The listener of each session event, by its name (see `handle`)."""

_listening: frozenset[str] = frozenset()
"""The session events listened to: those of the session signals that have ever had a
receiver (or a capture). Until then tracked sessions are not listened to at all, so a
commit costs exactly what it costs untracked; with receivers of post_save only, the flush
is not listened to either (SQLAlchemy re-reads the dirty objects after a before_flush
listener)."""
_listened: set[tuple[type[Session], str]] = set()


def track(target: _Target = None) -> None:
    """Make sessions send the model signals: every Session, or those of *target*.

    Idempotent: tracking the same target twice is tracking it once, and a session is never
    followed twice even when both its class and its sessionmaker are tracked.

    Args:
        target: ``None`` (every ``Session``, including those under each
            ``AsyncSession``), a ``Session`` subclass, a ``sessionmaker``, an
            ``async_sessionmaker`` or an ``AsyncSession`` subclass.

    Raises:
        TypeError: *target* is none of these.

    Example:
        ```python
        SessionLocal = async_sessionmaker(engine)
        track(SessionLocal)  # or track() for every session
        ```
    """
    with _lock:
        if id(target) in _tracked:
            return
        listened_class, undo = _session_class_of(target)
        _tracked[id(target)] = (target, listened_class, undo)
        _relisten()


def untrack(target: _Target = None) -> None:
    """Undo exactly what ``track(target)`` did (nothing if it is not tracked).

    Example:
        ```python
        track(SessionLocal)
        ...
        untrack(SessionLocal)  # e.g. at the end of a test
        ```
    """
    with _lock:
        found = _tracked.pop(id(target), None)
        if found is None:
            return
        found[2]()
        _relisten()


def tracked(session: Session) -> bool:
    """Whether *session* (a sync Session) is tracked: its commits deliver."""
    return any(isinstance(session, listened) for _, listened, _ in list(_tracked.values()))


def _session_class_of(target: _Target) -> tuple[type[Session], Callable[[], None]]:
    """The Session class whose events follow *target*, and how to undo any patch made."""

    def nothing() -> None:
        pass

    if target is None:
        return Session, nothing
    if isinstance(target, sessionmaker):
        return target.class_, nothing
    if isinstance(target, type) and issubclass(target, Session):
        return target, nothing
    if isinstance(target, async_sessionmaker):
        # Its sessions use this sync class underneath: give the maker one of its own, so
        # that tracking it follows exactly its sessions.
        had = "sync_session_class" in target.kw
        previous = target.kw.get("sync_session_class", AsyncSession.sync_session_class)
        own = type(previous.__name__, (previous,), {"__module__": previous.__module__})
        target.kw["sync_session_class"] = own

        def restore_maker() -> None:
            if had:
                target.kw["sync_session_class"] = previous
            else:
                target.kw.pop("sync_session_class", None)

        return own, restore_maker
    if isinstance(target, type) and issubclass(target, AsyncSession):
        had_own = "sync_session_class" in vars(target)
        previous_class: type[Session] = target.sync_session_class
        own_class = type(
            previous_class.__name__, (previous_class,), {"__module__": previous_class.__module__}
        )
        target.sync_session_class = own_class

        def restore_class() -> None:
            if had_own:
                target.sync_session_class = previous_class
            else:
                del target.sync_session_class

        return own_class, restore_class
    raise TypeError(
        f"track() takes None (every Session), a Session subclass, a sessionmaker, an "
        f"async_sessionmaker or an AsyncSession subclass, got {target!r}"
    )


def handle(**handlers: Callable[..., None]) -> None:
    """Name the listener of each session event (``before_flush=...``): the modules that
    send and record (`_flush`, `_delivery`) register theirs when imported."""
    _handlers.update(handlers)


def listen(events: frozenset[str]) -> None:
    """Listen to *events* on every tracked session class from now on."""
    global _listening
    if events <= _listening:
        return
    with _lock:
        _listening = _listening | events
        _relisten()


def _relisten() -> None:
    """Listen on each tracked class that has no tracked superclass, and on nothing else
    (SQLAlchemy would call a listener of a class and of its subclass twice)."""
    classes = {listened for _, listened, _ in _tracked.values()}
    roots = {c for c in classes if not any(c is not d and issubclass(c, d) for d in classes)}
    wanted = {(cls, name) for cls in roots for name in _listening}
    for cls, name in _listened - wanted:
        event.remove(cls, name, _handlers[name])
    for cls, name in wanted - _listened:
        event.listen(cls, name, _handlers[name])
    _listened.clear()
    _listened.update(wanted)


_watched: weakref.WeakSet[Mapper[Any]] = weakref.WeakSet()
_watching_all = False


def watch_updates(cls: Any) -> None:
    """Listen to ``before_update`` (the handler named so) on *cls*'s mapper, or on every
    mapper for ``None``, from now on: once per mapper, never for a class ``post_save`` has
    no receiver for, so that its objects' updates cost nothing more."""
    global _watching_all
    handler = _handlers["before_update"]
    with _lock:
        if _watching_all:
            return
        if cls is None:
            event.listen(Mapper, "before_update", handler, raw=True, retval=True)
            _watching_all = True
            return
        mapper = sqlalchemy.inspect(cls, raiseerr=False)
        if isinstance(mapper, Mapper) and mapper not in _watched:
            event.listen(mapper, "before_update", handler, raw=True, retval=True)
            _watched.add(mapper)
