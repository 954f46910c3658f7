"""The model signals of a session, and what they add to `AsyncSignal`: senders are mapped
classes or their dotted paths, and the first receiver makes tracked sessions send them.

Which session events each signal needs is said where it is defined; `asignals.sqlalchemy`'s
`_flush` sends and records in them, `_delivery` sends after the commit.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from .. import AsyncSignal
from ._outbox import _durable as durable
from ._seams import SeamSignal, describe
from ._senders import lazy
from ._tracking import BULK_EVENTS, COMMIT_EVENTS, FLUSH_EVENTS, listen, watch_updates

_R = TypeVar("_R", bound=Callable[..., Any])


class _ModelSignal(SeamSignal):
    """An `AsyncSignal` whose senders are mapped classes, or their dotted paths.

    ``connect(r, sender="shop.models.Order")`` works before ``shop.models`` is imported: the
    connection is made for the class itself as soon as a class of that module and name is
    mapped (or at once if it already is), so sends, which name the class, reach it.
    """

    def __init__(
        self,
        name: str,
        *,
        events: frozenset[str] = frozenset(),
        durable: bool = False,
        doc: str | None = None,
    ) -> None:
        super().__init__(name, doc=doc)
        self._session_events = events  # listened to on tracked sessions once in use
        self._takes_outbox = durable  # may have durable receivers (connect(outbox=...))

    def connect(
        self,
        receiver: _R,
        sender: Any = None,
        *,
        weak: bool = True,
        dispatch_uid: Hashable | None = None,
        to_thread: bool = False,
        timeout: float | None = None,
        outbox: Any = None,
    ) -> _R:
        options: dict[str, Any] = {
            "weak": weak,
            "dispatch_uid": dispatch_uid,
            "to_thread": to_thread,
            "timeout": timeout,
        }
        if outbox is not None:
            self._check_outbox(receiver, outbox)
            options["outbox"] = outbox
        if type(sender) is str:
            mapped = lazy.resolve(sender)
            if mapped is None:
                self._check(receiver, to_thread, timeout)  # fail now, not later
                lazy.add(self, sender, receiver, options)
                return receiver
            sender = mapped
        self._connect_mapped(receiver, sender, options)
        return receiver

    def _connect_mapped(self, receiver: Any, sender: Any, options: dict[str, Any]) -> None:
        """Connect *receiver* for *sender*, a mapped class (or None), durably if the
        options name an outbox."""
        outbox = options.get("outbox")
        if outbox is None:
            AsyncSignal.connect(self, receiver, sender, **options)
        else:
            rest = {key: value for key, value in options.items() if key != "outbox"}
            outbox._connect_durable(self, receiver, sender, rest)
            self._in_use()
        self._connected(sender)

    def _check_outbox(self, receiver: Any, outbox: Any) -> None:
        if not self._takes_outbox:
            raise TypeError(
                f"{self!r}.connect(outbox=...): only post_save, post_delete and m2m_changed "
                f"have durable receivers; connect {describe(receiver)} to one of those, or "
                f"without outbox="
            )
        if not callable(getattr(outbox, "_connect_durable", None)):
            raise TypeError(
                f"{self!r}.connect(outbox=...) takes an asignals.sqlalchemy.Outbox, got {outbox!r}"
            )

    def _connected(self, sender: Any) -> None:
        """A receiver is connected for *sender* (a mapped class, or None for any)."""

    def disconnect(
        self,
        receiver: Any = None,
        sender: Any = None,
        *,
        dispatch_uid: Hashable | None = None,
    ) -> bool:
        if type(sender) is str:
            if lazy.discard(self, sender, receiver, dispatch_uid):
                return True
            mapped = lazy.resolve(sender)
            if mapped is None:
                return False
            sender = mapped
        found = super().disconnect(receiver, sender, dispatch_uid=dispatch_uid)
        if self._takes_outbox and durable.active():
            found = durable.disconnect(self, receiver, sender, dispatch_uid) or found
        return found

    def _in_use(self) -> None:
        listen(self._session_events)  # the first receiver (or capture): its events are needed

    def _idle(self) -> bool:
        return super()._idle() and not (self._takes_outbox and durable.active())

    def _wanted(self, sender: type) -> bool:
        if self.has_listeners(sender):
            return True
        return self._takes_outbox and durable.active() and durable.wanted(self, sender)


class _SaveSignal(_ModelSignal):
    """`post_save`: the updates of the classes it has receivers for are watched (a column
    set to a SQL expression loses its old value in the flush: `_flush.before_update`)."""

    def _connected(self, sender: Any) -> None:
        watch_updates(sender)

    def _in_use(self) -> None:
        super()._in_use()
        if self._hooked():  # a capture (or a bridge) sees every sender's sends
            watch_updates(None)


pre_save = _ModelSignal(
    "pre_save",
    events=FLUSH_EVENTS,
    doc="In the flush, before the INSERT or UPDATE; payload instance, created, "
    "update_fields, changes. Changes to the instance are saved.",
)
post_save = _SaveSignal(
    "post_save",
    events=COMMIT_EVENTS,
    durable=True,
    doc="After the outermost commit, once per inserted or updated object; payload "
    "instance, created, update_fields, changes (merged over the transaction).",
)
pre_delete = _ModelSignal(
    "pre_delete",
    events=FLUSH_EVENTS,
    doc="In the flush, before the DELETE; payload instance.",
)
post_delete = _ModelSignal(
    "post_delete",
    events=COMMIT_EVENTS,
    durable=True,
    doc="After the outermost commit, once per deleted object; payload instance.",
)
m2m_changed = _ModelSignal(
    "m2m_changed",
    events=FLUSH_EVENTS | COMMIT_EVENTS,
    durable=True,
    doc="A many-to-many collection changed; payload instance, action ('pre_add', "
    "'pre_remove', 'pre_clear' in the flush; 'post_add', 'post_remove', 'post_clear' after "
    "the commit), attribute, model, pk_set.",
)

post_bulk_insert = _ModelSignal(
    "post_bulk_insert",
    events=BULK_EVENTS,
    doc="After the outermost commit, once per ORM-enabled INSERT statement run through a "
    "tracked session; payload pks, values, statement.",
)
post_bulk_update = _ModelSignal(
    "post_bulk_update",
    events=BULK_EVENTS,
    doc="After the outermost commit, once per ORM-enabled UPDATE statement that affected "
    "rows; payload pks, values, statement.",
)
post_bulk_delete = _ModelSignal(
    "post_bulk_delete",
    events=BULK_EVENTS,
    doc="After the outermost commit, once per ORM-enabled DELETE statement that affected "
    "rows; payload pks, values (None), statement.",
)
