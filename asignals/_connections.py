"""The connections of one signal and the plans published from them.

A signal keeps its connections in connection order, with two indexes (by the key
connect() and disconnect() look them up with, and by the weak references whose death
removes them), and publishes *plans* from them: the tuple of plan entries a send from a
given sender runs. The invariants live here, apart from the public API:

* every live connection is in exactly one place in each plan it belongs to, in
  connection order: a plan for any sender holds the connections made for any sender; a
  sender's own plan merges its connections with those;
* writers (connect, disconnect, a weak reference's death) hold the lock and publish new
  immutable values; sends read ``_plans`` once, without the lock, so a send keeps the
  snapshot it started with and connecting is safe from any thread;
* every update is incremental (an append, or one entry taken out), found through the
  indexes, so a connection per object stays cheap at tens of thousands.

It also keeps the weakly held receivers that no send has been handed yet (``_unsent``), so
that one garbage-collected before it ever ran is reported instead of vanishing silently.

`AsyncSignal` inherits this class, so the send path reads ``self._plans`` directly.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import threading
import weakref
from collections.abc import Callable, Coroutine, Hashable
from typing import Any

from ._plans import Plan, Responses, extend, plan_of
from ._receivers import (
    Call,
    Connection,
    Entry,
    Receiver,
    Ref,
    SenderKey,
    describe,
    is_value_sender,
    lookup_key,
    same_target,
    sender_key,
    strong_ref,
)

logger = logging.getLogger("asignals")

Plans = tuple[Plan, dict[SenderKey, tuple[Ref, Plan]]]
"""The plan for any sender, and the plans of the senders that have their own connections,
by `sender_key()` next to a reference that proves an ``id()`` key still means that
sender."""


class Connections:
    """The connection table of a signal (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: list[Connection] = []  # in connection order; sends never read it
        self._index: dict[Hashable, Connection] = {}  # by lookup_key()
        self._by_ref: dict[int, Connection] = {}  # by id() of its weak references
        self._prune_pending = False  # a death arrived while the lock was held
        self._plans: Plans = ((), {})
        # Bumped by every change of the plans (whose sender dict changes in place): a cache
        # of what they answer, such as asignals.sqlalchemy's per model class, compares it.
        self._version = 0
        # The last prepared send, for the next send to reuse (see AsyncSignal.send): valid
        # while nothing changes, so every change forgets it (`_changed`).
        self._ready: Ready = NOT_READY
        self._watchers: weakref.WeakSet[Any] = weakref.WeakSet()  # _dispatch.Watch objects
        self._on_death = _death_callback(self)
        # Weakly held receivers connected since the last send took a plan, with their
        # descriptions (taken at connect time: the receiver is gone by the time its death is
        # noticed). One that dies while still listed was never handed to a send, so it never
        # ran: a lambda, a closure or a bound method of a temporary that only the signal
        # referenced, weakly. Such a death is logged (once per description: `_warned`).
        #
        # Why this costs a send nothing: no send writes anything per receiver, nor per send.
        # A send empties the list only when it prepares (`asignals._dispatch.prepare`), and
        # every change, connecting a weak receiver included, makes the next send prepare
        # again (`_changed`): reusing the last prepared send never needs to.
        # Any send empties the whole list, whatever its sender: a receiver connected for
        # another sender then counts as sent to. That errs towards silence, never towards a
        # warning about a receiver that ran.
        self._unsent: dict[Connection, str] = {}
        self._warned: set[str] = set()

    def _connect(
        self, receiver: Receiver, ref: Ref, sender: Any, dispatch_uid: Hashable | None, call: Call
    ) -> None:
        """Add a connection, unless the same one (or the same *dispatch_uid*) is there."""
        sender_ref = None if sender is None else _sender_ref(sender, self._on_death)
        key = lookup_key(receiver, sender, dispatch_uid)
        # Outside the lock: describe() may run the receiver's own __repr__.
        description = describe(receiver) if isinstance(ref, weakref.ref) else None
        with self._lock:
            never_called = self._prune_if_pending()
            if self._find(key, receiver, sender, dispatch_uid) is None:
                self._add(Connection(ref, sender_ref, dispatch_uid, call, key), description)
        if never_called:
            self._warn_never_called(never_called)

    def _disconnect(
        self, receiver: Receiver | None, sender: Any, dispatch_uid: Hashable | None
    ) -> bool:
        """Take out one connection; return whether there was one."""
        key = lookup_key(receiver, sender, dispatch_uid)
        with self._lock:
            never_called = self._prune_if_pending()
            found = self._find(key, receiver, sender, dispatch_uid)
            if found is not None:
                self._remove(found)
        if never_called:
            self._warn_never_called(never_called)
        return found is not None

    def _sending(self) -> None:
        """A send has taken its plan: every receiver connected so far counts as sent to."""
        self._unsent.clear()
        for watcher in self._watchers:
            watcher.update()

    def _changed(self) -> None:
        """The plans (or the send hooks) changed: a new version, and the next send prepares
        again (which also notes that the weakly held receivers were handed a plan)."""
        self._version += 1  # after the plans: a reader of the new version sees them
        self._ready = NOT_READY
        for watcher in self._watchers:
            watcher.update()

    def _is_connected(self, receiver: Receiver, sender: Any) -> bool:
        """Whether *receiver* is connected for *sender*, with or without a dispatch_uid."""
        with self._lock:
            connections = list(self._connections)
        return any(c.is_for(sender) and same_target(c.ref(), receiver) for c in connections)

    def _plan_for(self, sender: Any) -> Plan:
        """The plan of a send from *sender*: its own, or else the plan for any sender."""
        any_plan, sender_plans = self._plans
        found = sender_plans.get(id(sender))
        if found is not None and found[0]() is sender:
            return found[1]
        if is_value_sender(sender):  # matched by value, filed under (type, value)
            found = sender_plans.get(sender_key(sender))
            if found is not None:
                return found[1]
        return any_plan

    # -- publishing (hold the lock) --------------------------------------------------------
    # Sends read `_plans` without the lock, so every change publishes values that are whole
    # on their own: a new tuple, or one sender's new plan stored into the dict in place (a
    # send reads one plan from it, old or new, and a copy per connect would make a
    # connection per object quadratic).

    def _find(
        self, key: Hashable, receiver: Receiver | None, sender: Any, dispatch_uid: Hashable | None
    ) -> Connection | None:
        found = self._index.get(key)
        if found is not None and found.is_for(sender) and found.matches(receiver, dispatch_uid):
            return found
        return None

    def _add(self, connection: Connection, description: str | None = None) -> None:
        if description is not None:  # a weakly held receiver: listed before it is published
            self._unsent[connection] = description
        self._connections.append(connection)
        self._index[connection.key] = connection
        for ref in connection.weak_refs:
            self._by_ref[id(ref)] = connection
        any_plan, sender_plans = self._plans
        entry = connection.entry
        if connection.sender_ref is None:  # a new last entry in every plan
            self._plans = (
                extend(any_plan, entry),
                {key: (ref, extend(plan, entry)) for key, (ref, plan) in sender_plans.items()},
            )
        else:
            key = connection.sender_key
            found = sender_plans.get(key)
            plan = found[1] if found is not None and found[0]() is not None else any_plan
            sender_plans[key] = (connection.sender_ref, extend(plan, entry))
        self._changed()

    def _remove(self, connection: Connection) -> str | None:
        """Take out one connection, also one whose receiver or sender just died; return the
        receiver's description if no send was handed it yet (see ``_unsent``)."""
        description = self._unsent.pop(connection, None)
        self._connections.remove(connection)
        if self._index.get(connection.key) is connection:
            del self._index[connection.key]
        for ref in connection.weak_refs:
            self._by_ref.pop(id(ref), None)
        any_plan, sender_plans = self._plans
        entry = connection.entry
        key = connection.sender_key
        if key is None:  # connected for any sender: in every plan
            self._plans = (
                _without(any_plan, entry),
                {key: (ref, _without(plan, entry)) for key, (ref, plan) in sender_plans.items()},
            )
        elif (found := sender_plans.get(key)) is not None:
            plan = _without(found[1], entry)  # unchanged if the id now means another sender
            if len(plan) > len(any_plan):
                sender_plans[key] = (found[0], plan)
            else:  # nothing of its own left: the sender goes back to the plan for any sender
                del sender_plans[key]
        self._changed()
        return description

    def _publish(self, connections: list[Connection]) -> None:
        """Rebuild everything from *connections*, in one pass.

        The pass groups the connections by sender; each sender's plan merges its own
        entries with the any-sender ones by connection index, so the cost is linear.
        """
        for_any: list[tuple[int, Entry]] = []
        by_sender: dict[SenderKey, tuple[Ref, list[tuple[int, Entry]]]] = {}
        for index, connection in enumerate(connections):
            sender_ref = connection.sender_ref
            if sender_ref is None:
                for_any.append((index, connection.entry))
            elif sender_ref() is not None:
                by_sender.setdefault(connection.sender_key, (sender_ref, []))[1].append(
                    (index, connection.entry)
                )
        sender_plans = {
            key: (sender_ref, plan_of(tuple(entry for _, entry in heapq.merge(for_any, own))))
            for key, (sender_ref, own) in by_sender.items()
        }
        self._connections = connections
        self._index = {connection.key: connection for connection in connections}
        self._by_ref = {id(ref): c for c in connections for ref in c.weak_refs}
        self._plans = (plan_of(tuple(entry for _, entry in for_any)), sender_plans)
        self._changed()

    def _forget(self, dead: Ref) -> None:
        """A weak reference of one connection died: take that connection out."""
        never_called = None
        if self._lock.acquire(blocking=False):
            try:
                connection = self._by_ref.get(id(dead))
                if connection is not None and any(ref is dead for ref in connection.weak_refs):
                    description = self._remove(connection)
                    if dead is connection.ref:  # the receiver died (not its sender)
                        never_called = description
            finally:
                self._lock.release()
        else:
            # A connect() or disconnect() is running, perhaps in this very thread (the
            # collection happened inside it): the next one prunes. Until then the loop
            # skips the dead reference, which returns None.
            self._prune_pending = True
        if never_called is not None:
            self._warn_never_called([never_called])

    def _prune_if_pending(self) -> list[str]:
        """Prune the connections that died while the lock was held; return the descriptions
        of the receivers among them that no send was handed (to warn about, unlocked)."""
        if not self._prune_pending:
            return []
        self._prune_pending = False
        alive: list[Connection] = []
        never_called: list[str] = []
        for connection in self._connections:
            if connection.alive:
                alive.append(connection)
                continue
            description = self._unsent.pop(connection, None)
            if description is not None and connection.ref() is None:  # the receiver died
                never_called.append(description)
        self._publish(alive)
        return never_called

    def _warn_never_called(self, descriptions: list[str]) -> None:
        """Log each weakly held receiver that died before any send was handed it (once per
        description and signal, so that a lambda connected per request does not flood the
        log). Never raises: this runs in weak reference callbacks."""
        for description in descriptions:
            if description in self._warned:
                continue
            if len(self._warned) < _MAX_WARNED:
                self._warned.add(description)
            with contextlib.suppress(Exception):  # a failing log handler: nobody to tell
                logger.warning(
                    "Receiver %s of %r was garbage-collected before it was ever called: the "
                    "signal held it through a weak reference only. Connect it with "
                    "weak=False, or keep a reference to it (for a bound method, to its "
                    "object) for as long as it should receive",
                    description,
                    self,
                )


async def _never(*_: Any) -> Responses:  # pragma: no cover - NOT_READY is never taken
    raise AssertionError("a send reused a prepared send that was not ready")


_Run = Callable[..., Coroutine[Any, Any, Responses]]
Ready = tuple[Plan, int, _Run, _Run, bool]
"""A signal's last prepared send: its plan for any sender, the payload's length, the loops
of send and send_robust for it, and whether some senders had plans of their own (then
each send looks its sender's up, and the loops take any plan; see `AsyncSignal.send`)."""
NOT_READY: Ready = ((), -1, _never, _never, False)  # no payload has that length: never taken

_MAX_WARNED = 256  # descriptions a signal remembers having warned about


def _without(plan: Plan, entry: Entry) -> Plan:
    for index, candidate in enumerate(plan):
        if candidate is entry:
            return plan_of(plan[:index] + plan[index + 1 :])
    return plan


def _death_callback(table: Connections) -> Callable[[Any], None]:
    """A weakref callback that updates *table* (a signal) without keeping it alive."""
    signal_ref = weakref.ref(table)

    def on_death(dead: Ref) -> None:
        alive = signal_ref()
        if alive is not None:
            alive._forget(dead)

    return on_death


def _sender_ref(sender: Any, on_death: Callable[[Any], None]) -> Ref:
    """Reference a sender weakly when possible, so that connecting does not keep it alive."""
    if is_value_sender(sender):  # matched by value: hold the value the user named
        return strong_ref(sender)
    try:
        return weakref.ref(sender, on_death)
    except TypeError:
        # Objects that cannot be weakly referenced and are not values (a list, an object
        # with __slots__): the connection holds the sender and compares it by identity.
        return strong_ref(sender)
