"""The flush: ``pre_save``, ``pre_delete`` and the ``pre_*`` ``m2m_changed`` actions are
sent before the SQL; what the flush wrote is recorded for delivery after the commit.

``before_flush`` sends (not robustly: a failing receiver fails the flush); ``after_flush``
puts what it wrote, for classes with receivers of the commit signals, into a `Frame` that
`_delivery` keeps for the transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.sql.elements import ClauseElement

from .. import AsyncSignal
from ._changes import (
    UNREAD,
    Shape,
    changes,
    known_key,
    m2m_history,
    m2m_written,
    primary_key,
    shape_of,
)
from ._compat import await_, in_greenlet
from ._delivery import note_expired, record
from ._frames import Changes, Frame, Saved
from ._interest import Seen, commit, interest, interest_of
from ._interest import idle as interest_idle
from ._signals import m2m_changed, post_save, pre_delete, pre_save
from ._tracking import handle


def before_flush(session: Session, flush_context: Any, instances: Any) -> None:
    if pre_save._idle() and pre_delete._idle() and m2m_changed._idle():
        return
    for instance in list(session.new):
        cls = type(instance)
        if pre_save._wanted(cls):
            _send_in_flush(
                pre_save, cls, instance=instance, created=True, update_fields=None, changes={}
            )
    for instance in list(session.dirty):
        cls = type(instance)
        if pre_save._wanted(cls):
            state: InstanceState[Any] = instance_state(instance)
            changed = changes(state, shape_of(state))
            if changed:
                _send_in_flush(
                    pre_save,
                    cls,
                    instance=instance,
                    created=False,
                    update_fields=frozenset(changed),
                    changes=changed,
                )
    for instance in list(session.deleted):
        cls = type(instance)
        if pre_delete._wanted(cls):
            _send_in_flush(pre_delete, cls, instance=instance)
    if not m2m_changed._idle():
        for instance in [*session.new, *session.dirty]:
            _m2m_in_flush(instance)


def _m2m_in_flush(instance: Any) -> None:
    cls = type(instance)
    if not m2m_changed._wanted(cls):
        return
    state: InstanceState[Any] = instance_state(instance)
    for attribute, model in shape_of(state).many_to_many:
        added, removed, emptied = m2m_history(state, attribute)
        known = [known_key(o) for o in removed]
        if removed:
            action = "pre_clear" if emptied else "pre_remove"
            keys = frozenset(k for k in known if k is not None)
            _send_in_flush(
                m2m_changed,
                cls,
                instance=instance,
                action=action,
                attribute=attribute,
                model=model,
                pk_set=keys,
            )
        if added:
            keys = frozenset(k for o in added if (k := known_key(o)) is not None)
            _send_in_flush(
                m2m_changed,
                cls,
                instance=instance,
                action="pre_add",
                attribute=attribute,
                model=model,
                pk_set=keys,
            )


def _send_in_flush(signal: AsyncSignal, sender: type, **payload: Any) -> None:
    """Send a pre_* signal (not robust: a failing receiver fails the flush)."""
    if in_greenlet():  # an AsyncSession: await coroutine receivers through its bridge
        await_(signal.send(sender, **payload))
    else:
        signal.send_sync(sender, **payload)


def after_flush(session: Session, flush_context: Any) -> None:
    if commit.idle and interest_idle():
        return
    table = interest()
    seen: Seen = {}
    frame: Frame | None = None  # what this flush wrote; only made for a class of interest
    written: dict[InstanceState[Any], Changes] | None = session.info.pop(_WRITTEN, None)
    expired: list[InstanceState[Any]] = []  # recorded, with attributes the flush expired
    # SQLAlchemy's own bookkeeping rather than session.new / .dirty / .deleted, which build
    # an IdentitySet of the objects on every call (a quarter of a microsecond per object).
    deleted = session._deleted
    for created, states in (
        (True, list(session._new) if session._new else ()),
        (False, [st for st in session.identity_map._modified if st not in deleted]),
    ):
        for state in states:
            saves, deletes, links, shape, _ = seen.get(state.class_) or interest_of(
                table, seen, state
            )
            wanted = saves or deletes  # a saved object deleted later in the transaction
            if not (wanted or links):
                continue
            instance = state.obj()
            if instance is None:  # pragma: no cover - collected while modified: nothing to send
                continue
            if frame is None:
                frame = Frame()
            if wanted:
                if state.expired_attributes:
                    expired.append(state)
                # A flush's own frame meets each object once (a pending one is not among
                # the identity map's modified): no record to merge with.
                if created:
                    frame.records[state] = Saved(instance, True, {})
                else:
                    changed = changes(state, shape, instance.__dict__)
                    if written and state in written:
                        changed.update(written[state])
                    if changed:
                        frame.records[state] = Saved(instance, False, changed)
            if links:
                _record_links(frame, flush_context, state, instance, shape)
    for state, instance in list(deleted.items()) if deleted else ():
        saves, deletes, _, _, _ = seen.get(state.class_) or interest_of(table, seen, state)
        if saves or deletes:
            if frame is None:
                frame = Frame()
            frame.deleted(state, instance)
    if frame is None or not frame.records:
        return  # nothing of interest was written: no bookkeeping at all for this commit
    record(session, frame)
    if expired:
        note_expired(session, expired)


def _record_links(
    frame: Frame, flush_context: Any, state: InstanceState[Any], instance: Any, shape: Shape
) -> None:
    for attribute, model in shape.many_to_many:
        added, removed, emptied = m2m_written(flush_context, state, attribute)
        if not (added or removed):
            continue
        linked = frame.linked(state, instance, attribute, model)
        for related in removed:
            linked.remove(primary_key(related))
        for related in added:
            linked.add(primary_key(related))
        if removed and emptied:
            linked.cleared = True


_WRITTEN = "asignals.sqlalchemy.written"
"""``session.info[_WRITTEN]``: in a flush, the changes of each object that set columns to
SQL expressions (`before_update` notes them; `after_flush` takes them)."""


def before_update(mapper: Any, connection: Any, state: InstanceState[Any]) -> None:
    """Note the columns set to SQL expressions (``sa.false()``, ``Order.stock - 1``): the
    flush runs them, then expires them and forgets their old values before `after_flush`.
    Their new values are loaded before delivery (`_delivery`).

    Listened to (``raw=True``: the state; ``retval=True``: called directly, without the
    wrapper SQLAlchemy puts around a listener whose return value it would ignore) on the
    mappers of the classes ``post_save`` has receivers for (every mapper for a receiver of
    every sender, or a capture), from the first such connection on
    (`_tracking.watch_updates`). It runs for every object the flush updates, so the common
    case, no SQL expression among the values, is one look at each changed attribute."""
    instance = state.obj()
    if instance is None:  # pragma: no cover - the flush holds what it updates
        return
    current = instance.__dict__  # what state.dict reads, without its two calls
    for key in state.committed_state:
        if isinstance(current.get(key), ClauseElement):
            break
    else:
        return
    session = state.session
    if session is None or post_save._idle():
        return
    found = _written_of(session, state)
    if found is None:
        return  # no post_save receiver for the class: nothing to note
    columns = shape_of(state).columns
    for key, old in state.committed_state.items():
        if key in columns and isinstance(current.get(key), ClauseElement):
            found[key] = (None if old is NO_VALUE else old, UNREAD)


def _written_of(session: Session, state: InstanceState[Any]) -> Changes | None:
    """Where the flush notes *state*'s SQL-expression columns (None: its class has no
    post_save receiver)."""
    if not interest_of(interest(), {}, state)[0]:
        return None
    written: Changes = session.info.setdefault(_WRITTEN, {}).setdefault(state, {})
    return written


handle(before_flush=before_flush, after_flush=after_flush, before_update=before_update)
