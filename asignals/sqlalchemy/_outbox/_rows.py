"""What an outbox row holds, and what a leased row becomes for the receivers.

A row is a send (`outbox.send`) or a model signal's event for durable receivers, as JSON
through the value codecs of the Redis bridge (`asignals._wire`). Senders cross as that
bridge's do (None, str, int, registered objects), and mapped classes by their dotted path,
``{"$model": "shop.models.Order"}``. A model event stores the object's primary key (and,
for a deletion, its column values); its receivers get the object loaded again.
"""

from __future__ import annotations

import base64
import datetime
import enum
import itertools
import json
import os
import socket
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import sqlalchemy
from sqlalchemy.orm import Mapper, make_transient_to_detached
from sqlalchemy.orm.attributes import instance_state, set_committed_value

from ... import AsyncSignal, _trace, _wire
from ..._dispatch import named
from .._changes import primary_key, shape_of
from .._senders import lazy, object_at
from .._signals import m2m_changed, post_delete, post_save
from ._table import Row, by_column

MODEL_TAG = "$model"
ENUM = "enum"  # {"$type": "enum", "v": [class path, value]}
INSTANCE = "instance"  # {"$type": "instance", "v": [class path, primary key]}
MODEL_SIGNALS = {signal.name: signal for signal in (post_save, post_delete, m2m_changed)}
"""The signals with durable receivers, by name (``outbox=`` works for these only)."""

_PLAIN = frozenset({str, int, bool, float, type(None)})  # stored as they are (floats checked)
_AS_THEY_ARE = frozenset({str, int, bool, type(None)})


def _where(what: str, name: str) -> str:
    return f"{what} {name!r}" if name else what


class Unknown(Exception):
    """A row this process cannot deliver, and cannot tell whether another can: its signal
    (or, for a model event, its class or durable receiver) is not known here."""

    def __init__(self, key: tuple[str, str | None], why: str) -> None:
        super().__init__(why)
        self.key = key  # what to skip: (signal, None) or (signal, sender)


_counter = itertools.count()
_suffix = ""


def _new_suffix() -> None:
    global _suffix
    _suffix = os.urandom(5).hex()


_new_suffix()
os.register_at_fork(after_in_child=_new_suffix)  # each worker its own


def stamp() -> str:
    """The time part of the ids of the rows written now: taken once per commit (or send)."""
    return f"{time.time_ns() // 1000:014x}"


def new_id(stamp: str) -> str:
    """A row id: 32 hex digits, the *stamp* of its commit (microseconds), a counter and
    a random part of this process's own (ids of other processes differ in it).

    Ids of one stamp sort in the order this process made them: the rows of one commit
    share their time in the table, so the relay orders them by id.
    """
    return f"{stamp}{next(_counter) & 0xFFFFFFFF:08x}{_suffix}"


def origin_name() -> str:
    """Names this process in the rows it writes and the leases it takes."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(6).hex()}"


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


_model_senders: weakref.WeakKeyDictionary[type, str] = weakref.WeakKeyDictionary()


def model_sender(cls: type) -> str:
    """The sender column of the rows of events of the mapped class *cls*."""
    sender = _model_senders.get(cls)
    if sender is None:
        sender = _model_senders[cls] = _wire.dumps({MODEL_TAG: class_path(cls)})
    return sender


def is_mapped_class(value: Any) -> bool:
    return isinstance(value, type) and isinstance(sqlalchemy.inspect(value, raiseerr=False), Mapper)


class Rows:
    """One outbox's encoding of rows (its registered senders and types) and decoding."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.codecs = _wire.Codecs()
        self.senders = _wire.Senders()
        # Column types beyond the wire's own (a deleted row's values, changes):
        self.codecs.register(bytes, "bytes", _b64encode, _b64decode)
        self.codecs.register(datetime.time, "time", _isoformat, datetime.time.fromisoformat)
        self.codecs.register(datetime.timedelta, "timedelta", _seconds, _timedelta)
        self.codecs.register_decoder(ENUM, _enum)
        self.codecs.register_decoder(INSTANCE, _related)

    # -- writing ----------------------------------------------------------------------------

    def send_row(
        self, signal: AsyncSignal[...], sender: Any, payload: dict[str, Any]
    ) -> dict[str, Any]:
        """The row of ``outbox.send(session, signal, sender, **payload)``, by column (as
        the transaction's frame keeps it: `by_column`); raises TypeError for a sender or a
        payload item that cannot be stored."""
        assert signal.name is not None
        if is_mapped_class(sender):
            wire_sender: Any = {MODEL_TAG: class_path(sender)}
        else:
            try:
                wire_sender = self.senders.plain(sender)
            except _wire.Unrepresentable as exc:
                raise TypeError(
                    f"outbox.send({signal!r}): the sender {exc.what} cannot be stored; send "
                    f"None, a str, an int or a mapped class, or call "
                    f"outbox.register_sender(sender, 'a.name') in every process"
                ) from None
        plain: dict[str, Any] = {}
        for key, value in payload.items():
            plain[key] = self._plain(value, signal, "payload item", key)
        # The trace of the code that sends (while traced): the delivery continues it.
        trace = _trace.capture()
        row = self._row(
            signal.name,
            _wire.dumps(wire_sender),
            _wire.escape(plain),
            None if trace is None else _wire.dumps(trace),
            stamp(),
        )
        return by_column(row)

    def model_row(
        self,
        signal: AsyncSignal[...],
        sender: str,
        payload: dict[str, Any],
        stamp: str,
        trace: str | None = None,
    ) -> Row:
        """The row of a model signal's event for its durable receivers: *sender* is its
        class's `model_sender`, *stamp* the commit's `stamp`, *trace* the commit's trace
        context as JSON. Raises TypeError for a value that cannot be stored."""
        assert signal.name is not None
        instance = payload["instance"]
        stored: dict[str, Any] = {"pk": self._key(instance)}
        if signal is post_save:
            stored["created"] = payload["created"]
            fields = payload["update_fields"]
            stored["update_fields"] = None if fields is None else sorted(fields)
            plain = self._plain
            stored["changes"] = {
                name: [
                    old
                    if type(old) in _AS_THEY_ARE
                    else plain(old, signal, "the old value of", name),
                    new
                    if type(new) in _AS_THEY_ARE
                    else plain(new, signal, "the new value of", name),
                ]
                for name, (old, new) in payload["changes"].items()
            }
        elif signal is post_delete:
            state = instance_state(instance)
            stored["values"] = {
                name: self._plain(state.dict[name], signal, "column", name)
                for name in sorted(shape_of(state).columns)
                if name in state.dict
            }
        else:
            stored["action"] = payload["action"]
            stored["attribute"] = payload["attribute"]
            stored["model"] = class_path(payload["model"])
            stored["pk_set"] = [
                self._plain(key, signal, "a key in pk_set") for key in payload["pk_set"]
            ]
        return self._row(signal.name, sender, stored, trace, stamp)

    def _row(self, name: str, sender: str, payload: Any, trace: str | None, stamp: str) -> Row:
        return (new_id(stamp), name, sender, _wire.dumps(payload), self.origin, trace)

    def _key(self, instance: Any) -> Any:
        identity: Any = instance_state(instance).identity  # written already: its key is known
        key: Any = identity if identity is not None else primary_key(instance)
        if type(key) is tuple:
            key = key[0] if len(key) == 1 else list(key)
        return key if type(key) in _PLAIN else self.codecs.plain(key)

    def _plain(self, value: Any, signal: AsyncSignal[...], what: str, name: str = "") -> Any:
        """*value* as JSON-ready data; raises TypeError naming *what* (and *name*) when it
        cannot be stored."""
        kind = type(value)
        if kind in _PLAIN:
            return self.codecs.plain(value) if kind is float else value
        if isinstance(value, enum.Enum):
            inner = self._plain(value.value, signal, what, name)
            return {_wire.TYPE_TAG: ENUM, "v": [class_path(kind), inner]}
        if sqlalchemy.inspect(kind, raiseerr=False) is not None and not isinstance(value, type):
            # A related object (a many-to-one change): stored by its class and key.
            return {_wire.TYPE_TAG: INSTANCE, "v": [class_path(kind), self._key(value)]}
        try:
            return self.codecs.plain(value)
        except _wire.Unrepresentable as exc:
            raise TypeError(
                f"{signal!r}: {_where(what, name)} holds {exc.what}, which the outbox cannot "
                f"store as JSON; store JSON values, or register the type with "
                f"outbox.register_type() or outbox.register_dataclass()"
            ) from None
        except RecursionError:
            raise TypeError(
                f"{signal!r}: {_where(what, name)} is nested too deeply; store a flatter value"
            ) from None

    # -- reading ----------------------------------------------------------------------------

    def signal_of(
        self, name: str, durable: Callable[[str], AsyncSignal[...] | None]
    ) -> AsyncSignal[...]:
        """The signal a leased row is delivered to: for a model event, the outbox's
        durable receivers of it (*durable*); else the one signal of that name here.
        Raises Unknown."""
        if name in MODEL_SIGNALS:
            found = durable(name)
            if found is None:
                raise Unknown((name, None), f"no durable receiver of {name} is connected here")
            return found
        signals = named(name)
        if len(signals) != 1:
            why = "no signal" if not signals else f"{len(signals)} signals"
            raise Unknown((name, None), f"{why} named {name!r} in this process")
        return signals[0]

    def sender_of(self, name: str, wire_sender: str) -> Any:
        """The sender of a leased row; raises Unknown (an unmapped class) or
        `_wire.Dropped` (an unregistered sender)."""
        plain = json.loads(wire_sender)
        if type(plain) is dict and set(plain) == {MODEL_TAG}:
            cls = lazy.resolve(plain[MODEL_TAG]) if type(plain[MODEL_TAG]) is str else None
            if cls is None:
                raise Unknown((name, wire_sender), f"no mapped class {plain[MODEL_TAG]!r} here")
            return cls
        return self.senders.resolve(plain)

    def payload_of(self, wire_payload: str) -> Any:
        """The stored payload: JSON with its typed values revived (not yet loaded)."""
        return self.codecs.revive(json.loads(wire_payload))


def load_key(pk: Any) -> Any:
    """A stored primary key as ``Session.get`` takes it."""
    return tuple(pk) if type(pk) is list else pk


class Related(NamedTuple):
    """A stored mapped object (a many-to-one change), to be loaded for the receiver."""

    path: str
    key: Any


def _related(value: Any) -> Related:
    path, key = value
    return Related(path, key)


def _enum(value: Any) -> enum.Enum:
    path, inner = value
    cls = object_at(path)
    if not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
        raise ValueError(f"no enum {path!r} here")
    return cls(inner)


def _b64encode(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _b64decode(value: Any) -> bytes:
    return base64.b64decode(value)


def _isoformat(value: datetime.time) -> str:
    return value.isoformat()


def _seconds(value: datetime.timedelta) -> list[int]:
    return [value.days, value.seconds, value.microseconds]


def _timedelta(value: Any) -> datetime.timedelta:
    days, seconds, microseconds = value
    return datetime.timedelta(days=days, seconds=seconds, microseconds=microseconds)


def model_payload(
    name: str, cls: type, stored: dict[str, Any], get: Callable[[type, Any], Any]
) -> dict[str, Any]:
    """The payload a durable receiver of model signal *name* gets, with the objects
    loaded again through *get* (``Session.get``); raises `_wire.Dropped` for a stored
    class that is not mapped here."""

    def revive(value: Any) -> Any:
        if type(value) is Related:
            return get(_mapped(value.path), load_key(value.key))
        return value

    if name == "post_delete":
        return {"instance": detached(cls, stored["values"])}
    instance = get(cls, load_key(stored["pk"]))
    if name == "post_save":
        fields = stored["update_fields"]
        return {
            "instance": instance,
            "created": stored["created"],
            "update_fields": None if fields is None else frozenset(fields),
            "changes": {
                key: (revive(old), revive(new)) for key, (old, new) in stored["changes"].items()
            },
        }
    return {
        "instance": instance,
        "action": stored["action"],
        "attribute": stored["attribute"],
        "model": _mapped(stored["model"]),
        "pk_set": frozenset(load_key(key) for key in stored["pk_set"]),
    }


def _mapped(path: str) -> type:
    cls = lazy.resolve(path)
    if cls is None:
        raise _wire.Dropped("unknown_sender", f"no mapped class {path!r} here")
    return cls


def detached(cls: type, values: dict[str, Any]) -> Any:
    """A detached object of *cls* holding a deleted row's stored column values."""
    mapper: Mapper[Any] = sqlalchemy.inspect(cls)
    instance = mapper.class_manager.new_instance()
    for name, value in values.items():
        set_committed_value(instance, name, value)
    make_transient_to_detached(instance)
    return instance


def keys_of(rows: Sequence[Any]) -> list[str]:
    return [row.id for row in rows]
