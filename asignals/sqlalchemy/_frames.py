"""What a transaction has changed, per object, merged over its flushes and savepoints.

Pure bookkeeping, no SQLAlchemy: the rest of the package feeds a ``Frame`` from each flush
and delivers it after the outermost commit. One frame belongs to each transaction that can
commit or roll back on its own (the outermost one and each savepoint). A released
savepoint's frame is merged into its parent's as if its flushes had happened there; a
rolled-back one is dropped.

The rules, per object (keyed by its SQLAlchemy ``InstanceState``):

* inserted, then updated: one ``created`` record (the updates are part of the new row);
* inserted, then deleted: nothing at all;
* updated, then deleted: only the deletion;
* updated several times: one record whose ``changes`` map each attribute to its first old
  and last new value; an attribute changed back to its old value drops out, and a record
  whose changes all dropped out is not delivered.

Records keep the order in which their object first changed, and hold the object strongly
(a session's identity map does not).
"""

from __future__ import annotations

from typing import Any

Changes = dict[str, tuple[Any, Any]]


class Saved:
    """An object inserted or updated (``deleted`` once it was deleted afterwards)."""

    __slots__ = ("changes", "created", "deleted", "instance")

    def __init__(self, instance: Any, created: bool, changes: Changes) -> None:
        self.instance = instance
        self.created = created
        self.deleted = False
        self.changes = changes

    def __repr__(self) -> str:
        what = "deleted" if self.deleted else "created" if self.created else "updated"
        return f"<Saved {what} {self.instance!r} {self.changes!r}>"

    @property
    def empty(self) -> bool:
        """An update whose every change was undone: nothing to deliver."""
        return not (self.created or self.deleted or self.changes)

    def payload(self) -> dict[str, Any]:
        """The payload of post_save for this object (not deleted)."""
        return {
            "instance": self.instance,
            "created": self.created,
            "update_fields": None if self.created else frozenset(self.changes),
            "changes": self.changes,  # the record is dropped after delivery
        }


class Linked:
    """A many-to-many collection's net additions and removals of related objects."""

    __slots__ = ("added", "attribute", "cleared", "instance", "model", "removed")

    def __init__(self, instance: Any, attribute: str, model: type) -> None:
        self.instance = instance
        self.attribute = attribute
        self.model = model
        self.added: dict[Any, None] = {}  # primary keys, in order (a dict as ordered set)
        self.removed: dict[Any, None] = {}
        self.cleared = False  # a removal left the collection empty

    def __repr__(self) -> str:
        return f"<Linked {self.attribute} +{list(self.added)} -{list(self.removed)}>"

    def add(self, key: Any) -> None:
        if key in self.removed:
            del self.removed[key]
        else:
            self.added[key] = None

    def remove(self, key: Any) -> None:
        if key in self.added:
            del self.added[key]
        else:
            self.removed[key] = None

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed)

    def payloads(self) -> list[dict[str, Any]]:
        """The payloads of the post_* m2m_changed sends for this collection."""
        found = []
        common = {"instance": self.instance, "attribute": self.attribute, "model": self.model}
        if self.removed:
            action = "post_clear" if self.cleared and not self.added else "post_remove"
            found.append({**common, "action": action, "pk_set": frozenset(self.removed)})
        if self.added:
            found.append({**common, "action": "post_add", "pk_set": frozenset(self.added)})
        return found


class Bulk:
    """A bulk statement that affected rows: its signal, sender and payload, ready to send."""

    __slots__ = ("payload", "sender", "signal")

    empty = False

    def __init__(self, signal: Any, sender: type, payload: dict[str, Any]) -> None:
        self.signal = signal
        self.sender = sender
        self.payload = payload

    def __repr__(self) -> str:
        return f"<Bulk {self.signal!r} {self.sender.__name__}>"


Record = Saved | Linked | Bulk


def merge_changes(into: Changes, later: Changes) -> None:
    """Apply *later* changes on top of *into*: first old value, last new value."""
    for name, (old, new) in later.items():
        if name in into:
            old = into[name][0]
        if same(old, new):
            into.pop(name, None)
        else:
            into[name] = (old, new)


def same(old: Any, new: Any) -> bool:
    """Whether an attribute's value is unchanged; never raises.

    An attribute may hold anything: a type whose ``==`` raises, or returns something
    without a truth value (a SQL expression assigned to be run by the flush, such as
    ``sa.false()`` or ``Order.quantity + 1``): those count as changed.
    """
    if old is new:
        return True
    try:
        return bool(old == new)
    except Exception:
        return False


class Frame:
    """The records of one transaction (or savepoint), in first-change order."""

    __slots__ = ("committed", "records", "sent", "trace")

    def __init__(self) -> None:
        self.records: dict[Any, Record] = {}
        self.committed = False  # set when a savepoint is released (merged at its end)
        self.sent: list[tuple[Any, dict[str, Any]]] = []  # outbox.send rows: (outbox, row)
        # The trace context current at its first flush, while traced (asignals._trace):
        # its delivery after the commit continues that trace.
        self.trace: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"<Frame {list(self.records.values())!r}>"

    def saved(self, key: Any, instance: Any, created: bool, changes: Changes) -> None:
        """Record an INSERT (*created*) or an UPDATE; the frame keeps *changes* itself."""
        records = self.records
        found = records.get(key)
        if found is None:  # the common case: the object's first change in this frame
            records[key] = Saved(instance, created, {} if created else changes)
            return
        if not isinstance(found, Saved) or found.deleted:
            # New here (or a deleted row's key reused by a new row): start afresh.
            self.records.pop(key, None)
            self.records[key] = Saved(instance, created, {} if created else changes)
            return
        if not found.created:
            merge_changes(found.changes, changes)

    def deleted(self, key: Any, instance: Any) -> None:
        found = self.records.get(key)
        if isinstance(found, Saved) and found.created:
            del self.records[key]  # inserted and deleted in one transaction: nothing happened
            return
        record = Saved(instance, False, {})
        record.deleted = True
        self.records.pop(key, None)
        self.records[key] = record

    def linked(self, key: Any, instance: Any, attribute: str, model: type) -> Linked:
        found = self.records.get((key, attribute))
        if not isinstance(found, Linked):
            found = self.records[(key, attribute)] = Linked(instance, attribute, model)
        return found

    def bulk(self, record: Bulk) -> None:
        """Record a bulk statement (each is its own record, in order)."""
        self.records[record] = record

    def merge(self, child: Frame) -> None:
        """Take in a released savepoint's records, as if they had happened here."""
        self.sent.extend(child.sent)
        for key, record in child.records.items():
            if isinstance(record, Bulk):
                self.records[key] = record
            elif isinstance(record, Linked):
                mine = self.linked(key[0], record.instance, record.attribute, record.model)
                for pk in record.removed:
                    mine.remove(pk)
                for pk in record.added:
                    mine.add(pk)
                mine.cleared = mine.cleared or record.cleared
            elif record.deleted:
                self.deleted(key, record.instance)
            else:
                self.saved(key, record.instance, record.created, record.changes)

    def deliverable(self) -> list[Record]:
        return [record for record in self.records.values() if not record.empty]
