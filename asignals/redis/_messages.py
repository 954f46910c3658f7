"""What a send becomes on the wire, and what a message from Redis becomes for receivers.

`asignals.redis._wire` defines the format; this is the bridge's side of it: the senders
and payload types registered to cross, the secret and the size limit, and the incoming
messages it drops (counted by reason, logged once per reason).
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from .. import _wire
from .._delivery import current_delivery
from .._receivers import describe
from ._types import Counters, Settings

if TYPE_CHECKING:
    from ._routes import Route

logger = logging.getLogger("asignals.redis")

Inbound = tuple[_wire.Envelope, Any, dict[str, Any]]
"""A decoded message: its envelope, its sender and its payload, ready for the receivers."""


def _too_deep(signal: object, key: str) -> TypeError:
    return TypeError(
        f"{signal!r}: payload item {key!r} is nested too deeply (or contains itself) to "
        f"cross Redis as JSON; send a flatter value, or an id and load the data instead"
    )


class Messages:
    """One bridge's encoder and decoder of messages."""

    def __init__(self, bridge: object, origin: str, settings: Settings, counters: Counters) -> None:
        self.bridge = bridge  # named in the log
        self.origin = origin  # this bridge's name in every message it sends
        self.codecs = _wire.Codecs()
        self._secret = settings.secret
        self._max_bytes = settings.max_message_bytes
        self._counters = counters
        self.senders = _wire.Senders()
        self._logged_drops: set[str] = set()
        # The bytes this bridge's own messages start with (see _wire.echo_mark).
        self.echo, self.echo_at = _wire.echo_mark(origin, settings.secret)

    def register_sender(self, sender: Any, name: str) -> None:
        """Let *sender* cross under *name* (see `RedisBridge.register_sender`)."""
        self.senders.register(sender, name)

    # -- outgoing ---------------------------------------------------------------------------

    def encode(self, route: Route, sender: Any, payload: dict[str, Any]) -> bytes:
        """The message of one send; raises `TypeError` or `ValueError` for what cannot cross."""
        signal = route.signal
        try:
            wire_sender = self.senders.plain(sender)
        except _wire.Unrepresentable:
            raise TypeError(
                f"{signal!r}: the sender {describe(sender)} cannot cross Redis; send None, "
                f"a str or an int, or call bridge.register_sender(sender, 'a.name') in "
                f"every process"
            ) from None
        plain: dict[str, Any] = {}
        for key, value in payload.items():
            try:
                plain[key] = self.codecs.plain(value)
            except _wire.Unrepresentable as exc:
                raise TypeError(
                    f"{signal!r}: payload item {key!r} holds {exc.what}, which cannot cross "
                    f"Redis as JSON; send JSON values, or register the type with "
                    f"bridge.register_type() or bridge.register_dataclass()"
                ) from None
            except RecursionError:
                raise _too_deep(signal, key) from None
        delivery = current_delivery()
        if delivery is not None and delivery.mode == "outbox" and delivery.signal == route.name:
            # An outbox relaying its row: the row's id, so that a relay that dies before
            # deleting the row sends the same id again and a consumer can drop the copy.
            id_ = delivery.id
        else:
            id_ = os.urandom(16).hex()
        envelope = {
            # "v" and "origin" first: see _wire.echo_mark.
            "v": _wire.VERSION,
            "origin": self.origin,
            "id": id_,
            "signal": route.name,
            "sender": wire_sender,
            "payload": _wire.escape(plain),  # an item named "$type" is not a typed value
            "ts": time.time(),
        }
        try:
            data = _wire.seal(envelope, self._secret)
        except RecursionError:  # pragma: no cover - plain() went as deep and did not raise
            raise _too_deep(signal, next(iter(payload), "?")) from None
        if len(data) > self._max_bytes:
            raise ValueError(
                f"{signal!r}: the message is {len(data)} bytes, more than "
                f"max_message_bytes={self._max_bytes}; send an id and load the data instead"
            )
        return data

    # -- incoming ---------------------------------------------------------------------------

    def open(self, data: bytes) -> _wire.Envelope:
        """Check and parse one message; raises `_wire.Dropped`."""
        return _wire.open_envelope(data, self._secret, self._max_bytes)

    def resolve_sender(self, wire_sender: Any) -> Any:
        """The sender a message names, from this process's registry; raises `_wire.Dropped`."""
        return self.senders.resolve(wire_sender)

    def inbound(self, data: Any, route: Route, group: str | None) -> Inbound | _wire.Dropped:
        """Decode one message for *route*: the envelope, the sender and the payload, or
        why it is dropped (counted, and logged once per reason)."""
        try:
            return self._decode(data, route)
        except _wire.Dropped as dropped:
            failure = dropped
        except Exception as exc:
            # (a RecursionError, an OverflowError, a type's decode raising ...): a drop like
            # any other, never a traceback per message or a queue entry retried forever.
            failure = _wire.Dropped("malformed", f"decoding it raised {type(exc).__name__}")
        self._drop(failure, route.key if group is None else f"{route.key} ({group})")
        return failure

    def _decode(self, data: Any, route: Route) -> Inbound:
        if not isinstance(data, bytes):
            raise _wire.Dropped("malformed", "the entry has no message field")
        envelope = _wire.open_envelope(data, self._secret, self._max_bytes)
        if envelope.signal != route.name:
            raise _wire.Dropped("unknown_signal", f"{envelope.signal!r} arrived on {route.key!r}")
        sender = envelope.sender
        if not (sender is None or type(sender) is str or type(sender) is int):
            sender = self.resolve_sender(sender)
        payload = envelope.payload
        if envelope.typed:
            payload = self.codecs.revive(payload)
            if type(payload) is not dict:
                raise _wire.Dropped("malformed", "the payload is not an object")
        if "signal" in payload or "sender" in payload:
            raise _wire.Dropped("malformed", "the payload uses a reserved name")
        return envelope, sender, payload

    def _drop(self, dropped: _wire.Dropped, where: str) -> None:
        self._counters.dropped[dropped.kind] += 1
        if dropped.kind not in self._logged_drops:  # once per kind, not once per message
            self._logged_drops.add(dropped.kind)
            logger.warning(
                "%r dropped a message from %s (%s); further drops of this kind are only "
                "counted (bridge.statistics().dropped)",
                self.bridge,
                where,
                dropped,
            )
