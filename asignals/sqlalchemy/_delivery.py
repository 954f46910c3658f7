"""Delivery: ``post_save``, ``post_delete`` and the ``post_*`` ``m2m_changed`` actions, sent
after the outermost commit, before ``commit()`` returns; never on rollback.

A session keeps one `Frame` per open transaction that can commit or roll back on its own
(the outermost one and each savepoint): `record` adds what each flush wrote to it, a
released savepoint's frame joins its parent's, a rolled-back one is dropped, and the
outermost one's commit delivers it (`deliver`, which also chooses where receivers run).
"""

from __future__ import annotations

import logging
from typing import Any

import anyio.from_thread
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.session import SessionTransaction
from sqlalchemy.orm.state import InstanceState

from ._changes import UNREAD, shape_of
from ._compat import await_, committing, connections_of, in_greenlet
from ._frames import Bulk, Frame, Saved
from ._interest import Seen, interest, interest_of
from ._outbox import _durable as durable
from ._seams import (
    Prepared,
    SeamSignal,
    capture,
    continued,
    in_worker_thread,
    prepare,
    send_robust_inline,
)
from ._signals import _ModelSignal, m2m_changed, post_delete, post_save
from ._tracking import handle

logger = logging.getLogger("asignals")

# -- each transaction's frame ---------------------------------------------------------------

_INFO_KEY = "asignals.sqlalchemy.frames"
"""Where a session keeps its frames: ``session.info[_INFO_KEY]``, a dict from each open
SessionTransaction (the outermost one, and each savepoint) to what it changed. State that
lives and dies with the session; `_after_transaction_end` removes each entry."""


def _frames_of(session: Session) -> dict[SessionTransaction, Frame] | None:
    frames: dict[SessionTransaction, Frame] | None = session.info.get(_INFO_KEY)
    return frames


def _owner(transaction: SessionTransaction) -> SessionTransaction:
    """The savepoint or outermost transaction that commits or rolls back *transaction*."""
    while not transaction.nested and transaction.parent is not None:
        transaction = transaction.parent
    return transaction


def record(session: Session, frame: Frame) -> None:
    """Add what a flush wrote to the frame of the transaction it belongs to."""
    owner = session.get_nested_transaction() or session.get_transaction()
    if owner is None:  # pragma: no cover - a flush always runs in a transaction
        return
    frames = _frames_of(session)
    if frames is None:
        frames = session.info[_INFO_KEY] = {}
    earlier = frames.get(owner)
    if earlier is None:
        frames[owner] = earlier = frame
    else:
        earlier.merge(frame)
    if earlier.trace is None:  # traced: delivery continues the trace of the first flush
        earlier.trace = capture()


_COMMITTING = "asignals.sqlalchemy.committing"
"""``session.info[_COMMITTING]``: the outermost transaction is committing (from its
``before_commit`` to its end), so the flush that follows is the commit's last."""


def _before_commit(session: Session) -> None:
    """The outermost transaction is about to commit: load what a rolled-back savepoint (or
    an explicit expire) expired on the objects about to be delivered, while SQL is still
    allowed, write the outbox rows, and mark the session so that the commit's own flush
    loads what it expires too.

    A savepoint still open when the outermost transaction commits is committed after this
    event: the work is then done when it ends (`_after_transaction_end`)."""
    if session.in_nested_transaction():
        return  # a savepoint's own commit (or the outermost one's, with savepoints open)
    _prepare_commit(session)


def _prepare_commit(session: Session) -> None:
    session.info[_COMMITTING] = True
    frame = _root_frame(session)
    if not durable.pending(frame):
        _load_expired(session, frame)
        return
    # Durable receivers (or outbox.send rows): what is pending is flushed now, so that
    # every event of the transaction is known when the rows are written (the commit's
    # own flush then finds nothing to do).
    session.flush()
    frame = _root_frame(session)
    _load_expired(session, frame)
    if frame is not None:
        durable.write(session, frame)


def _root_frame(session: Session) -> Frame | None:
    """The frame of the session's outermost transaction."""
    frames = _frames_of(session)
    root = session.get_transaction()
    return frames.get(root) if frames and root is not None else None


_EXPIRED = "asignals.sqlalchemy.expired"
"""``session.info[_EXPIRED]``: the recorded objects the last flush left with expired
attributes (`note_expired`), taken by its ``after_flush_postexec``."""


def note_expired(session: Session, states: list[InstanceState[Any]]) -> None:
    """The flush that is ending left *states* (recorded for delivery) with expired
    attributes: what the database computed, or columns set to SQL expressions."""
    session.info[_EXPIRED] = states


def _after_flush_postexec(session: Session, flush_context: Any) -> None:
    """The commit's last flush expired what the database computed (``onupdate=``, server
    defaults, SQL expressions): load it now, in the same transaction, for the receivers.
    (What an earlier flush expired is loaded at ``before_commit``.)"""
    states = session.info.pop(_EXPIRED, None)
    if states and session.info.get(_COMMITTING):
        _load_expired(session, _root_frame(session), states)


def _load_expired(
    session: Session, frame: Frame | None, only: list[InstanceState[Any]] | None = None
) -> None:
    """Load the expired columns of each object the commit will deliver (the records of the
    outermost transaction's *frame*, or *only* those), one SELECT each, for objects of
    classes with receivers only, and fill in the new values of changes the flush wrote
    from SQL expressions. After the commit no SQL is allowed, and the receivers must be
    able to read every column attribute."""
    if frame is None:
        return
    records = frame.records
    found = (
        list(records.items())
        if only is None
        else [(state, records[state]) for state in only if state in records]
    )
    for key, saved in found:
        if not isinstance(saved, Saved) or saved.deleted:
            continue
        state: InstanceState[Any] = key
        expired = state.expired_attributes and state.expired_attributes & shape_of(state).columns
        if expired and state.session_id == session.hash_key:
            try:
                getattr(saved.instance, next(iter(expired)))  # one SELECT loads them all
            except Exception as exc:  # e.g. the row was deleted meanwhile: deliver anyway
                logger.debug("asignals.sqlalchemy: could not reload %r: %s", saved.instance, exc)
        for name, (old, new) in saved.changes.items():
            if new is UNREAD:
                saved.changes[name] = (old, state.dict.get(name))


def _after_commit(session: Session) -> None:
    frames = _frames_of(session)
    if not frames:
        return
    nested = session.get_nested_transaction()
    if nested is None:
        durable.committed(session)  # wakes this process's relays, if rows were written
    if nested is not None:  # a savepoint was released: its frame joins the parent's at its end
        frame = frames.get(nested)
        if frame is not None:
            frame.committed = True
        return
    root = session.get_transaction()
    frame = frames.pop(root, None) if root is not None else None
    if root is not None and frame is not None:
        _give_back_connections(root)
        if frame.trace is None:  # (it is only set while traced)
            deliver(frame)
            return
        with continued(frame.trace):
            deliver(frame)


def _give_back_connections(root: SessionTransaction) -> None:
    """Return the committed transaction's connections to their pools before the receivers
    run, so that a receiver writing through a session of its own finds one free (with
    ``pool_size=1``, or as many requests at once as the pool has connections).

    The transaction's ``close()``, right after ``after_commit``, would close exactly these
    (the ones it opened itself: *autoclose*; a connection the session was bound to stays
    open) and closing them again there does nothing. The values the receivers read are
    still loaded: expire-on-commit happens between ``after_commit`` and ``close()``.
    """
    for connection, autoclose in connections_of(root):
        if autoclose:
            connection.close()


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_COMMITTING, None)
        durable.discarded(session)
        return
    if not transaction.nested:
        return  # a flush's subtransaction (frames belong to savepoints and the root only)
    frames = _frames_of(session)
    if frames:
        _end_savepoint(frames, transaction)
    root = _owner(transaction.parent)
    if root.parent is None and committing(root) and not session.in_nested_transaction():
        # The outermost transaction commits with savepoints open: the last of them is
        # released now, before the COMMIT; do what its before_commit could not.
        _prepare_commit(session)


def _end_savepoint(
    frames: dict[SessionTransaction, Frame], transaction: SessionTransaction
) -> None:
    """A savepoint ended: its frame joins its parent's if it was released, and is dropped
    if it rolled back."""
    frame = frames.pop(transaction, None)
    if frame is None or not frame.committed:
        return  # rolled back (or closed without a commit): deliver nothing
    parent = transaction.parent
    if parent is None:  # pragma: no cover - a savepoint always has a parent
        return
    owner = _owner(parent)
    into = frames.get(owner)
    if into is None:
        frames[owner] = frame
        frame.committed = False
    else:
        into.merge(frame)
        if into.trace is None:
            into.trace = frame.trace


handle(
    before_commit=_before_commit,
    after_flush_postexec=_after_flush_postexec,
    after_commit=_after_commit,
    after_transaction_end=_after_transaction_end,
)


# -- sending --------------------------------------------------------------------------------

Send = tuple[_ModelSignal, type, dict[str, Any]]
Run = tuple[_ModelSignal, type, list[dict[str, Any]]]
"""Consecutive sends of one signal from one sender: their payloads, in order."""


def deliver(frame: Frame) -> None:
    """Send the post_* signals for a committed transaction; never raise into commit().

    Where the receivers run is decided once per commit:

    * when every receiver of these sends is a sync function (the common case, and the
      cheap one): they are called right here, in the thread that commits, as Django does;
    * otherwise under an AsyncSession (SQLAlchemy's greenlet bridge): every send is
      awaited on the session's event loop, all of them through one ``await_``;
    * otherwise in an anyio worker thread: all of them run on the event loop that started
      the thread, in one hop, while the thread waits (as ``send_robust_sync`` would);
    * otherwise (a script, or the event loop's own thread): ``send_robust_sync`` for the
      signals with coroutine receivers, inline calls for the others.

    Receivers' own exceptions are logged by ``send_robust``. What is caught here is a send
    that could not start (a coroutine receiver and a sync Session on the event loop's own
    thread): logged once per commit, with the number of sends it hit.
    """
    runs = _runs_of(frame)
    if not runs:
        return
    # Each (signal, class) pair's plan and compiled loop, looked up once: the deliveries of
    # one commit share one snapshot of the receivers, as the receivers of one send do.
    prepared: dict[tuple[SeamSignal, Any], Prepared] = {}
    inline = True  # every send can run right here
    for signal, sender, payloads in runs:
        if (signal, sender) not in prepared:
            found = prepared[(signal, sender)] = prepare(signal, sender, payloads[0])
            inline = inline and found[1] is not None
    failed: list[tuple[Send, Exception]] = []
    try:
        if inline:
            send_robust_inline(runs, prepared)  # the hot path
        else:
            failed = _send_elsewhere(runs, prepared)
    except Exception as exc:  # pragma: no cover - the bridge itself failed
        signal, sender, payloads = runs[0]
        failed = [((signal, sender, payloads[0]), exc)]
    if failed:
        (signal, _, payload), error = failed[0]
        logger.error(
            "asignals.sqlalchemy: could not deliver %d model signal(s) after the commit, "
            "first %r for %r: %s: %s",
            len(failed),
            signal,
            payload.get("instance"),
            type(error).__name__,
            error,
            exc_info=error,
        )


def _send_elsewhere(
    runs: list[Run], prepared: dict[tuple[SeamSignal, Any], Prepared]
) -> list[tuple[Send, Exception]]:
    """The sends of a commit some of whose receivers must be awaited (or a send hook sees):
    each where it can run (see `deliver`); the sends that could not start."""
    sends = [(signal, sender, payload) for signal, sender, payloads in runs for payload in payloads]
    if in_greenlet():
        failed: list[tuple[Send, Exception]] = await_(_send_all(sends))
        return failed
    if in_worker_thread():
        return anyio.from_thread.run(_send_all, sends)
    failed = []
    for send in sends:
        signal, sender, payload = send
        try:
            if prepared[(signal, sender)][1] is not None:
                send_robust_inline(((signal, sender, [payload]),), prepared)
            else:
                signal.send_robust_sync(sender, **payload)
        except Exception as exc:
            failed.append((send, exc))
    return failed


async def _send_all(sends: list[Send]) -> list[tuple[Send, Exception]]:
    failed: list[tuple[Send, Exception]] = []
    for send in sends:
        signal, sender, payload = send
        try:
            await signal.send_robust(sender, **payload)
        except Exception as exc:  # pragma: no cover - send_robust catches receivers' errors
            failed.append((send, exc))
    return failed


def _runs_of(frame: Frame) -> list[Run]:
    """The post_* sends a committed frame makes, in order, as runs of one signal from one
    sender (classes without receivers skipped; an update whose changes were all undone
    sends nothing)."""
    runs: list[Run] = []
    run: Run | None = None  # the last one: the next send of its signal and sender joins it
    table = interest()
    seen: Seen = {}
    for found in frame.records.values():
        if isinstance(found, Saved):  # the common case first
            instance = found.instance
            cls = type(instance)
            # What reaches a receiver here (durable ones were written before the COMMIT).
            _, _, _, _, (saves, deletes, _) = seen.get(cls) or interest_of(
                table, seen, instance_state(instance)
            )
            if found.deleted:
                if not deletes:
                    continue
                signal: _ModelSignal = post_delete
                payload = {"instance": instance}
            elif saves and (found.created or found.changes):
                signal, payload = post_save, found.payload()
            else:
                continue
            if run is not None and run[0] is signal and run[1] is cls:
                run[2].append(payload)
            else:
                run = (signal, cls, [payload])
                runs.append(run)
            continue
        if isinstance(found, Bulk):
            sends = [(found.signal, found.sender, found.payload)]
        else:
            cls = type(found.instance)
            _, _, _, _, (_, _, links) = seen.get(cls) or interest_of(
                table, seen, instance_state(found.instance)
            )
            sends = [(m2m_changed, cls, payload) for payload in found.payloads()] if links else []
        runs.extend((signal, sender, [payload]) for signal, sender, payload in sends)
        run = None
    return runs
