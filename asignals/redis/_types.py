"""The bridge's types: what users see of it (errors, deliveries, dead letters, statistics)
and the settings and counters its parts share."""

from __future__ import annotations

import dataclasses
from typing import Any

from .. import _wire
from .._checks import check_count, check_seconds
from .._delivery import Delivery as Delivery


class BridgeConnectionError(ConnectionError):
    """Raised when Redis did not accept a message (or answer at all) within the bridge's
    ``send_timeout``.

    A subclass of the builtin `ConnectionError`, so callers need not import redis.

    Example:
        ```python
        try:
            await order_created.send("shop", order_id=42)
        except ConnectionError:
            return Response("try again shortly", status_code=503)
        ```
    """


def not_running(signal: object, bridge: object) -> RuntimeError:
    """The error of a command for *signal* while *bridge* is stopped."""
    return RuntimeError(f"{signal!r}: {bridge!r} is not running (`async with bridge:`)")


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    """A queued message that failed `max_deliveries` times or was dropped (a bad
    signature, an unknown sender or type, a message that does not decode), as
    `RedisBridge.dead_letters` returns it.

    Attributes:
        stream_id: Its entry id in the dead-letter stream.
        original_id: Its entry id in the signal's stream.
        id: The envelope id.
        sender: The decoded sender (``None`` if it could not be decoded).
        payload: The decoded payload (``{}`` if it could not be decoded).
        error: The last error, as ``"ExceptionType: message (in receiver)"``, or why it
            was dropped, as ``"dropped (bad_signature: ...)"``.
        deliveries: How many times it was delivered.
        consumer: The consumer that gave up on it.
        failed_at: When (``time.time()``).

    Example:
        ```python
        for letter in await bridge.dead_letters(order_created, group="mailer"):
            print(letter.id, letter.error)
        ```
    """

    stream_id: str
    original_id: str
    id: str
    sender: Any
    payload: dict[str, Any]
    error: str
    deliveries: int
    consumer: str
    failed_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class BridgeStatistics:
    """Counters of one bridge since it was created (`RedisBridge.statistics`).

    Attributes:
        connected: Whether the bridge reaches Redis right now.
        outages: How many times it lost Redis.
        published: Fanout messages published.
        enqueued: Queue messages Redis accepted.
        received: Messages from Redis re-sent locally (fanout and queue).
        acknowledged: Queue messages acknowledged after every receiver succeeded.
        failed: Queue deliveries in which a receiver raised (left pending for a retry).
        claimed: Queue messages claimed from idle consumers (XAUTOCLAIM).
        dead_lettered: Queue messages moved to a dead-letter stream (after
            ``max_deliveries`` failures, or dropped: those are counted in ``dropped`` too).
        duplicates: Queue messages acknowledged without running the receivers because
            their group had already finished that envelope id (``queue(dedupe=...)``).
        dropped: Incoming messages dropped, by reason (``"malformed"``, ``"unsigned"``,
            ``"bad_signature"``, ``"oversized"``, ``"wrong_version"``, ``"unknown_signal"``,
            ``"unknown_sender"``, ``"unknown_type"``).

    Example:
        ```python
        stats = bridge.statistics()
        assert stats.dropped.get("bad_signature", 0) == 0
        ```
    """

    connected: bool
    outages: int
    published: int
    enqueued: int
    received: int
    acknowledged: int
    failed: int
    claimed: int
    dead_lettered: int
    duplicates: int
    dropped: dict[str, int]


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """A bridge's settings, as `RedisBridge` takes them (see its Args), checked."""

    url: str
    prefix: str
    secret: bytes | None
    send_timeout: float
    max_message_bytes: int
    maxlen: int
    batch: int
    reconnect_base: float
    reconnect_cap: float
    health_interval: float
    cluster: bool = False

    @classmethod
    def checked(
        cls,
        url: str,
        prefix: str,
        secret: str | bytes | None,
        send_timeout: float,
        max_message_bytes: int,
        maxlen: int,
        batch: int,
        reconnect_base: float,
        reconnect_cap: float,
        health_interval: float,
        cluster: bool = False,
    ) -> Settings:
        """The settings, once each has the right type and range (or `TypeError`,
        `ValueError` naming it)."""
        if not isinstance(url, str) or not url:
            raise TypeError(f"RedisBridge(): url must be a redis:// URL string, got {url!r}")
        if not isinstance(prefix, str) or not prefix:
            raise TypeError(f"RedisBridge(): prefix must be a non-empty string, got {prefix!r}")
        if secret is not None and not isinstance(secret, str | bytes):
            raise TypeError("RedisBridge(): secret must be str or bytes")
        if not isinstance(cluster, bool):
            raise TypeError(f"RedisBridge(): cluster must be True or False, got {cluster!r}")
        if secret is not None and len(secret) < 16:
            raise ValueError("RedisBridge(): secret must be at least 16 characters long")
        for name, value in (
            ("send_timeout", send_timeout),
            ("reconnect_base", reconnect_base),
            ("reconnect_cap", reconnect_cap),
            ("health_interval", health_interval),
        ):
            check_seconds(f"RedisBridge(): {name}", value)
        for name, number in (
            ("max_message_bytes", max_message_bytes),
            ("maxlen", maxlen),
            ("batch", batch),
        ):
            check_count(f"RedisBridge(): {name}", number)
        return cls(
            url,
            prefix,
            secret.encode() if isinstance(secret, str) else secret,
            float(send_timeout),
            max_message_bytes,
            maxlen,
            batch,
            float(reconnect_base),
            float(reconnect_cap),
            float(health_interval),
            cluster,
        )


@dataclasses.dataclass(slots=True)
class Counters:
    """The running totals behind `BridgeStatistics`: one object per bridge, which its parts
    (the writer, the listeners, the health check) count into."""

    outages: int = 0
    published: int = 0
    enqueued: int = 0
    received: int = 0
    acknowledged: int = 0
    failed: int = 0
    claimed: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    dropped: dict[str, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(_wire.DROP_KINDS, 0)
    )

    def snapshot(self, connected: bool) -> BridgeStatistics:
        """A copy, for `RedisBridge.statistics` (whose fields have the same names)."""
        counts = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        counts["dropped"] = dict(self.dropped)
        return BridgeStatistics(connected=connected, **counts)
