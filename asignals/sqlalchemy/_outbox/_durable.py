"""Durable receivers, and the rows a commit writes for them.

A durable receiver (``@receiver(post_save, sender=Order, outbox=outbox)``) is not
connected to the model signal itself, so the in-memory delivery never calls it: each
outbox keeps its durable receivers of each model signal in a signal of its own
(`DurableReceivers`), which its relay sends when it delivers a row.

At the outermost commit (`write`, from ``before_commit``, after a flush of what is
pending), every event with a durable receiver becomes one row, as does every
``outbox.send`` of the transaction, inserted through the committing session's own
connection before ``COMMIT``. After the commit (`committed`) the relays of this process
that got rows are woken; on rollback the rows are gone with the transaction.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from ... import AsyncSignal
from .. import _signals  # (imports this module: its names are read when called)
from .._frames import Bulk, Frame, Saved
from . import _table

if TYPE_CHECKING:
    from ._outbox import Outbox


class DurableReceivers(AsyncSignal):
    """One outbox's durable receivers of one model signal (not found by name: the relay
    reaches it through its outbox)."""

    _listed = False


_outboxes: weakref.WeakSet[Outbox] = weakref.WeakSet()
"""The outboxes that have (or had) a durable receiver: a commit asks only these."""


_version = 0
"""Bumped whenever a durable receiver is connected or disconnected (`version`)."""


def changed(outbox: Outbox) -> None:
    """*outbox*'s durable receivers changed (it has some now, maybe)."""
    global _version
    _outboxes.add(outbox)
    _version += 1


def version() -> int:
    return _version


def active() -> bool:
    """Some outbox has durable receivers: a commit must look for their events."""
    return bool(_outboxes)


def wanted(signal: AsyncSignal[...], cls: type) -> bool:
    """Some outbox has a durable receiver of *signal* for *cls*."""
    return any(outbox._durable_for(signal, cls) for outbox in list(_outboxes))


def disconnect(signal: AsyncSignal[...], receiver: Any, sender: Any, dispatch_uid: Any) -> bool:
    """Disconnect a durable receiver of *signal*, whichever outbox has it."""
    found = False
    for outbox in list(_outboxes):
        if outbox._disconnect_durable(signal, receiver, sender, dispatch_uid):
            found = True
            changed(outbox)
    return found


_WROTE = "asignals.sqlalchemy.outbox.wrote"
"""``session.info[_WROTE]``: the outboxes the committing transaction wrote rows to."""


def pending(frame: Frame | None) -> bool:
    """The commit of *frame* may write rows."""
    return bool(_outboxes) or (frame is not None and bool(frame.sent))


def write(session: Session, frame: Frame) -> None:
    """Insert the rows of the committing transaction (*frame*), before ``COMMIT``."""
    rows: dict[Outbox, list[dict[str, Any]]] = {}
    for outbox, row in frame.sent:
        rows.setdefault(outbox, []).append(row)
    outboxes = list(_outboxes)
    if outboxes:
        for signal, cls, payload in _events(frame):
            for outbox in outboxes:
                if outbox._durable_for(signal, cls):
                    rows.setdefault(outbox, []).append(outbox._rows.model_row(signal, cls, payload))
    if not rows:
        return
    for outbox, written in rows.items():
        connection = session.connection(bind_arguments={"clause": outbox.table})
        _table.insert_rows(connection, outbox.table, written)
    session.info[_WROTE] = list(rows)


def _events(frame: Frame) -> Iterator[tuple[AsyncSignal[...], type, dict[str, Any]]]:
    for found in frame.deliverable():
        if isinstance(found, Bulk):
            continue
        cls = type(found.instance)
        if isinstance(found, Saved):
            if found.deleted:
                yield _signals.post_delete, cls, {"instance": found.instance}
            else:
                yield _signals.post_save, cls, found.payload()
        else:
            for payload in found.payloads():
                yield _signals.m2m_changed, cls, payload


def committed(session: Session) -> None:
    """The transaction that wrote rows committed: wake this process's relays of them."""
    for outbox in session.info.pop(_WROTE, ()):
        outbox._committed()


def discarded(session: Session) -> None:
    """The outermost transaction ended without a commit: its rows are gone with it."""
    session.info.pop(_WROTE, None)
