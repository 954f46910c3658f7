"""The transaction bookkeeping of asignals.sqlalchemy, on its own (no database)."""

from __future__ import annotations

from asignals.sqlalchemy._frames import Frame, Linked, Saved, merge_changes


class Incomparable:
    def __eq__(self, other: object) -> bool:
        raise ValueError("no comparing")

    __hash__ = object.__hash__


def test_merge_keeps_the_first_old_and_the_last_new_value() -> None:
    changes: dict[str, tuple[object, object]] = {"item": ("a", "b")}
    merge_changes(changes, {"item": ("b", "c"), "quantity": (1, 2)})
    assert changes == {"item": ("a", "c"), "quantity": (1, 2)}
    merge_changes(changes, {"item": ("c", "a")})
    assert changes == {"quantity": (1, 2)}


def test_values_that_cannot_be_compared_count_as_changed() -> None:
    odd = Incomparable()
    changes: dict[str, tuple[object, object]] = {}
    merge_changes(changes, {"blob": (odd, 1)})
    assert changes == {"blob": (odd, 1)}
    merge_changes(changes, {"blob": (1, 2)})
    assert changes == {"blob": (odd, 2)}
    merge_changes(changes, {"blob": (2, odd)})  # back to the very same object: unchanged
    assert changes == {}


def test_insert_update_delete_sequences() -> None:
    frame = Frame()
    frame.saved("a", "A", True, {})
    frame.saved("a", "A", False, {"item": (1, 2)})
    frame.saved("b", "B", False, {"item": (1, 2)})
    frame.deleted("b", "B")
    frame.saved("c", "C", True, {})
    frame.deleted("c", "C")
    records = frame.deliverable()
    assert [(r.instance, r.created, r.deleted) for r in records if isinstance(r, Saved)] == [
        ("A", True, False),
        ("B", False, True),
    ]
    assert "Saved created" in repr(records[0])
    assert "Saved deleted" in repr(records[1])
    assert "Frame" in repr(frame)


def test_a_deleted_key_saved_again_starts_afresh() -> None:
    frame = Frame()
    frame.deleted("a", "old row")
    frame.saved("a", "new row", True, {})
    [record] = frame.deliverable()
    assert isinstance(record, Saved)
    assert (record.instance, record.created, record.deleted) == ("new row", True, False)


def test_links_cancel_out() -> None:
    frame = Frame()
    linked = frame.linked("a", "A", "tags", str)
    linked.add(1)
    linked.remove(1)
    linked.remove(2)
    linked.add(2)
    assert linked.empty
    assert frame.deliverable() == []
    linked.add(3)
    assert "tags" in repr(linked)
    assert frame.linked("a", "A", "tags", str) is linked


def test_a_released_savepoint_merges_like_later_flushes() -> None:
    parent, child = Frame(), Frame()
    parent.saved("a", "A", False, {"item": (1, 2)})
    parent.saved("gone", "G", True, {})
    parent.linked("a", "A", "tags", str).add(1)
    child.saved("a", "A", False, {"item": (2, 1)})  # changed back: nothing left
    child.saved("b", "B", False, {"item": (5, 6)})
    child.deleted("gone", "G")  # inserted in the parent, deleted in the savepoint
    child.deleted("d", "D")
    links = child.linked("a", "A", "tags", str)
    links.remove(1)
    links.add(7)
    links.cleared = True
    parent.merge(child)
    out = parent.deliverable()
    saved = [(r.instance, r.deleted, r.changes) for r in out if isinstance(r, Saved)]
    assert saved == [("B", False, {"item": (5, 6)}), ("D", True, {})]
    [link] = [r for r in out if isinstance(r, Linked)]
    assert (dict(link.added), dict(link.removed), link.cleared) == ({7: None}, {}, True)
