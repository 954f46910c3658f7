"""Random sequences of commits, rollbacks, savepoints, updates, deletes and relay runs,
checked against a model of what must be delivered (Hypothesis; an SQLite file each).

The model: every committed change is one event, delivered once by a relay (none runs while
the commits are made, as in a process that died or runs no relay: a relay started later
delivers them); nothing of a rolled-back transaction or savepoint is ever delivered; the
events of one row arrive in the order of their commits; a ``post_save`` whose row was
deleted before the relay ran gets ``instance=None``.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from asignals.sqlalchemy import Outbox, post_delete, post_save, track, untrack
from durable.models import Base, Kitchen
from durable.support import until

NAMES = st.sampled_from(["soup", "bread", "salad", "stew"])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), NAMES),
        st.tuples(st.just("insert, rolled back"), NAMES),
        st.tuples(st.just("savepoint"), NAMES, NAMES, st.booleans()),
        st.tuples(st.just("update"), st.integers(0, 20), NAMES),
        st.tuples(st.just("delete"), st.integers(0, 20)),
        st.tuples(st.just("relay")),
    ),
    max_size=12,
)

Event = tuple[Any, ...]


class Model:
    """What the database holds and which events must be delivered."""

    def __init__(self) -> None:
        self.rows: dict[int, str] = {}  # id -> name
        self.events: list[Event] = []  # committed, not yet delivered
        self.expected: list[Event] = []  # what the relay runs so far must have delivered

    def relay(self) -> None:
        """A relay delivers every committed event: a saved row deleted since is gone."""
        for event in self.events:
            if event[0] == "saved" and event[1] not in self.rows:
                event = ("saved", None, *event[2:])
            self.expected.append(event)
        self.events = []

    def pick(self, index: int) -> int | None:
        return sorted(self.rows)[index % len(self.rows)] if self.rows else None


def apply(session_of: sessionmaker[Session], model: Model, operation: tuple[Any, ...]) -> bool:
    """Run one operation and update the model; whether it asks for a relay run."""
    kind = operation[0]
    if kind == "relay":
        model.relay()
        return True
    with session_of() as session:
        if kind == "insert":
            kitchen = Kitchen(name=operation[1])
            session.add(kitchen)
            session.commit()
            model.rows[kitchen.id] = kitchen.name
            model.events.append(("saved", kitchen.id, True, {}))
        elif kind == "insert, rolled back":
            session.add(Kitchen(name=operation[1]))
            session.flush()
            session.rollback()
        elif kind == "savepoint":
            _, outer_name, inner_name, keep = operation
            outer = Kitchen(name=outer_name)
            session.add(outer)
            inner = Kitchen(name=inner_name)
            savepoint = session.begin_nested()
            session.add(inner)
            session.flush()
            inner_id = inner.id
            if keep:
                savepoint.commit()
            else:
                savepoint.rollback()
            session.commit()
            model.rows[outer.id] = outer_name
            model.events.append(("saved", outer.id, True, {}))
            if keep:
                model.rows[inner_id] = inner_name
                model.events.append(("saved", inner_id, True, {}))
        elif kind == "update":
            chosen = model.pick(operation[1])
            if chosen is not None:
                kitchen = session.get_one(Kitchen, chosen)
                old, new = kitchen.name, operation[2]
                kitchen.name = new
                session.commit()
                model.rows[chosen] = new
                if new != old:
                    model.events.append(("saved", chosen, False, {"name": (old, new)}))
        else:  # delete
            chosen = model.pick(operation[1])
            if chosen is not None:
                session.delete(session.get_one(Kitchen, chosen))
                session.commit()
                del model.rows[chosen]
                model.events.append(("deleted", chosen))
    return False


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(operations=OPERATIONS)
def test_random_commits_rollbacks_and_relay_runs_deliver_what_the_model_says(
    operations: list[tuple[Any, ...]],
) -> None:
    delivered: list[Event] = []
    with tempfile.TemporaryDirectory() as directory:
        engine = create_engine(f"sqlite:///{Path(directory) / 'model.db'}")
        outbox = Outbox(engine, metadata=Base.metadata, poll_interval=0.05)
        Base.metadata.create_all(engine)
        session_of = sessionmaker(engine, expire_on_commit=False)
        track(session_of)

        def saved(
            instance: Kitchen | None, created: bool, changes: dict[str, Any], **_: Any
        ) -> None:
            delivered.append(("saved", instance and instance.id, created, changes))

        def deleted(instance: Kitchen, **_: Any) -> None:
            delivered.append(("deleted", instance.id))

        post_save.connect(saved, sender=Kitchen, outbox=outbox, weak=False)
        post_delete.connect(deleted, sender=Kitchen, outbox=outbox, weak=False)

        async def relay() -> None:
            async with outbox:
                await until(pending_none)

        async def pending_none() -> bool:
            return (await outbox.statistics()).pending == 0

        model = Model()
        try:
            for operation in [*operations, ("relay",)]:
                if apply(session_of, model, operation):
                    anyio.run(relay)
        finally:
            post_save.disconnect(saved, sender=Kitchen)
            post_delete.disconnect(deleted, sender=Kitchen)
            untrack(session_of)
            with Session(engine) as session:
                left = session.scalars(select(outbox.table.c.id)).all()
            engine.dispose()
    assert left == []
    assert Counter(map(repr, delivered)) == Counter(map(repr, model.expected))  # once each
    for key in {event[1] for event in model.expected} - {None}:
        assert [e for e in delivered if e[1] == key] == [e for e in model.expected if e[1] == key]
