"""The bridge: registration, lifecycle, sending and receiving (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import itertools
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Final, Literal, NamedTuple

import anyio
import anyio.abc

from .._checks import check_count, check_seconds
from .._dispatch import Plan, Responses
from .._extras import missing
from .._hooks import BRIDGE as _BRIDGE
from .._hooks import add_hook, find_hook, remove_hook
from .._receivers import ASYNC as _ASYNC
from .._receivers import describe
from .._signal import AsyncSignal
from . import _wire

try:
    import redis.asyncio as aioredis
    import redis.exceptions as redis_errors
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
except ImportError as exc:  # pragma: no cover - the dev extra installs redis
    raise missing("asignals.redis", "redis-py", "redis", exc) from exc

logger = logging.getLogger("asignals.redis")

bridge_connected = AsyncSignal(
    "bridge_connected",
    doc="Sent (robustly, sender=the bridge) when a RedisBridge reaches Redis again after "
    "an outage. Payload: outage (seconds the outage lasted).",
)
"""Sent robustly, with the bridge as sender, when it reaches Redis again after an outage.

Payload: `outage`, the seconds the outage lasted.
"""

bridge_disconnected = AsyncSignal(
    "bridge_disconnected",
    doc="Sent (robustly, sender=the bridge) when a RedisBridge loses Redis. Payload: error.",
)
"""Sent robustly, with the bridge as sender, when it loses Redis. Payload: `error`."""

_CONNECTION_ERRORS: Final = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    OSError,
    TimeoutError,
)
_resending: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "asignals.redis.resending", default=False
)
_delivery: contextvars.ContextVar[Delivery | None] = contextvars.ContextVar(
    "asignals.redis.delivery", default=None
)


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


class Delivery(NamedTuple):
    """What the bridge knows about the message a receiver is handling.

    Read it with `current_delivery()` inside a receiver; use ``id`` (the envelope id, the
    same in every delivery of one message) to make a queue receiver idempotent.

    Attributes:
        id: The envelope id the sending process gave the message.
        signal: The signal's name.
        origin: The sending bridge (``host:pid:random``).
        timestamp: When it was sent (``time.time()`` of the sender).
        mode: ``"fanout"`` or ``"queue"``.
        stream_id: The Redis Streams entry id (queue), ``None`` for fanout.
        group: The consumer group handling it (queue), ``None`` for fanout.
        delivery_count: How many times Redis has delivered it to the group, this time
            included (1 on the first attempt; always 1 for fanout).

    Example:
        ```python
        async def send_receipt(sender, order_id, **kwargs):
            delivery = current_delivery()
            if delivery is not None and await already_sent(delivery.id):
                return
            ...
        ```
    """

    id: str
    signal: str
    origin: str
    timestamp: float
    mode: Literal["fanout", "queue"]
    stream_id: str | None = None
    group: str | None = None
    delivery_count: int = 1


def current_delivery() -> Delivery | None:
    """The `Delivery` a receiver is running for, or ``None`` for a plain local send.

    Example:
        ```python
        async def on_order(sender, **kwargs):
            delivery = current_delivery()
            if delivery is not None and delivery.delivery_count > 1:
                logger.info("retry %d of %s", delivery.delivery_count, delivery.id)
        ```
    """
    return _delivery.get()


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    """A queued message that failed `max_deliveries` times, as `RedisBridge.dead_letters`
    returns it.

    Attributes:
        stream_id: Its entry id in the dead-letter stream.
        original_id: Its entry id in the signal's stream.
        id: The envelope id.
        sender: The decoded sender (``None`` if it could not be decoded).
        payload: The decoded payload (``{}`` if it could not be decoded).
        error: The last error, as ``"ExceptionType: message"``.
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
        dead_lettered: Queue messages moved to a dead-letter stream.
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
    dropped: dict[str, int]


@dataclasses.dataclass(slots=True)
class _Group:
    name: str
    claim_after: float
    max_deliveries: int


@dataclasses.dataclass(slots=True, eq=False)
class _Route:
    """One signal the bridge carries, and how."""

    signal: AsyncSignal
    name: str  # the signal's name: its name on the wire
    mode: Literal["fanout", "queue"]
    key: str  # the channel (fanout) or the stream (queue)
    maxlen: int
    groups: dict[str, _Group] = dataclasses.field(default_factory=dict)
    hook: _BridgeHook | None = None


class _Outgoing:
    """The plan entry of one send: publishes (or enqueues) the message encoded for it."""

    __slots__ = ("bridge", "data", "route")

    def __init__(self, bridge: RedisBridge, route: _Route, data: bytes) -> None:
        self.bridge = bridge
        self.route = route
        self.data = data

    async def __call__(self, **_: Any) -> Any:
        return await self.bridge._put(self.route, self.data)

    def __repr__(self) -> str:
        verb = "publish" if self.route.mode == "fanout" else "enqueue"
        return f"<RedisBridge {verb} {self.route.name!r} to {self.route.key!r}>"


class _BridgeHook:
    """The send hook the bridge installs on a signal (see asignals/_hooks.py)."""

    __slots__ = ("bridge", "route")

    def __init__(self, bridge: RedisBridge, route: _Route) -> None:
        self.bridge = bridge
        self.route = route

    def __call__(self, sender: Any, payload: dict[str, Any], plan: Plan) -> Plan:
        if _resending.get():  # a message from Redis, re-sent here: only the local plan
            return plan
        data = self.bridge._encode(self.route, sender, payload)
        entry = (itertools.repeat(_Outgoing(self.bridge, self.route, data)).__next__, _ASYNC)
        if self.route.mode == "queue":
            return (entry,)  # receivers run where a group consumes, not here
        return (entry, *plan)

    def observes(self, sender: Any) -> bool:
        return True  # another process may listen: a send is always worth making


class _Backoff:
    """Bounded exponential backoff with jitter: 0.5x to 1x of min(cap, base * 2**n)."""

    def __init__(self, base: float, cap: float) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * 2**self.attempt)
        self.attempt = min(self.attempt + 1, 32)
        return float(delay * random.uniform(0.5, 1.0))

    def reset(self) -> None:
        self.attempt = 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBridge:
    """Carries chosen signals between processes through one Redis server.

    Register signals with `fanout` and `queue`, then run the bridge with ``async with
    bridge:`` (an ASGI lifespan is a good place). Every background task (the pub/sub
    listener, one consumer per queued signal and group, a health check) belongs to a task
    group that ``async with`` owns; leaving the block stops them all.

    Args:
        url: A redis-py URL, ``redis://[:password@]host:port/db``.
        prefix: Starts every key and channel name, so several apps can share a server.
        secret: Sign every message with HMAC-SHA256 and drop incoming ones that are not
            signed with the same secret. Every process of the app needs the same secret.
        consumer: This process's consumer name within each group. The default
            (``host:pid``) is new on every start; give a stable name (``"mailer-1"``) so a
            restarted consumer re-reads the messages it had not finished.
        send_timeout: Seconds a send (and the initial connection) may keep retrying before
            `BridgeConnectionError` (a `ConnectionError`) is raised.
        max_message_bytes: Larger outgoing messages raise `ValueError`; larger incoming ones
            are dropped.
        maxlen: Approximate length each signal's stream (and dead-letter stream) is
            trimmed to on every append (``XADD MAXLEN ~``). Entries beyond it are deleted
            even if no group has read them yet: size it for your longest outage.
        batch: Queue entries read (and acknowledged) per round trip.
        reconnect_base: First reconnection delay in seconds; it doubles up to
            *reconnect_cap*, with jitter.
        reconnect_cap: Longest reconnection delay in seconds.
        health_interval: Seconds between health checks (PING) while connected.

    Example:
        ```python
        bridge = RedisBridge("redis://127.0.0.1:6379/0", prefix="shop", secret=SECRET)
        bridge.register_sender(Shop, "shop.Shop")
        bridge.fanout(cache_invalidated)
        bridge.queue(order_created, group="mailer", claim_after=30.0, max_deliveries=5)

        async with bridge:
            await serve()
        ```
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "asignals",
        secret: str | bytes | None = None,
        consumer: str | None = None,
        send_timeout: float = 5.0,
        max_message_bytes: int = 1_000_000,
        maxlen: int = 100_000,
        batch: int = 100,
        reconnect_base: float = 0.1,
        reconnect_cap: float = 5.0,
        health_interval: float = 1.0,
    ) -> None:
        if not isinstance(url, str) or not url:
            raise TypeError(f"RedisBridge(): url must be a redis:// URL string, got {url!r}")
        if not isinstance(prefix, str) or not prefix:
            raise TypeError(f"RedisBridge(): prefix must be a non-empty string, got {prefix!r}")
        if secret is not None and not isinstance(secret, str | bytes):
            raise TypeError("RedisBridge(): secret must be str or bytes")
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
        self.url = url
        self.prefix = prefix
        self._secret = secret.encode() if isinstance(secret, str) else secret
        host = socket.gethostname()
        self.consumer = consumer if consumer is not None else f"{host}:{os.getpid()}"
        self.origin = f"{host}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._send_timeout = float(send_timeout)
        self._max_bytes = max_message_bytes
        self._maxlen = maxlen
        self._batch = batch
        self._reconnect_base = float(reconnect_base)
        self._reconnect_cap = float(reconnect_cap)
        self._health_interval = float(health_interval)
        self._codecs = _wire.Codecs()
        self._senders_by_name: dict[str, Any] = {}
        self._names_by_sender: dict[int, tuple[Any, str]] = {}
        self._routes: dict[str, _Route] = {}  # by signal name
        self._client: Any = None  # redis.asyncio.Redis while running
        # Commands waiting for the writer task (see _write), bounded by _room.
        # (Made again on every start: asyncio primitives belong to the loop that used them.)
        self._outbox: list[tuple[_Route, bytes, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._room = asyncio.Semaphore(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._connected = False
        self._down_since = 0.0
        self._counts = dict.fromkeys(
            (
                "outages",
                "published",
                "enqueued",
                "received",
                "acknowledged",
                "failed",
                "claimed",
                "dead_lettered",
            ),
            0,
        )
        self._dropped: dict[str, int] = dict.fromkeys(_wire.DROP_KINDS, 0)
        self._logged_drops: set[str] = set()

    def __repr__(self) -> str:
        state = "running" if self._task_group is not None else "stopped"
        return f"<RedisBridge {self.prefix!r} {state}>"

    # -- registration ---------------------------------------------------------------------

    def fanout(self, *signals: AsyncSignal) -> None:
        """Carry *signals* to every process whose bridge fans them out (pub/sub).

        A local send runs the local receivers and publishes the message; every other
        process re-sends it locally with ``send_robust``. At most once: a process that is
        disconnected while a message is published never gets it.

        Raises:
            TypeError: Not an `AsyncSignal`.
            ValueError: Another signal of that name is registered, or this one is queued.

        Example:
            ```python
            bridge.fanout(cache_invalidated, settings_changed)
            ```
        """
        for signal in signals:
            route = self._route(signal, "fanout")
            if route.hook is None:
                self._install(route)

    def queue(
        self,
        signal: AsyncSignal,
        *,
        group: str | None = None,
        claim_after: float = 30.0,
        max_deliveries: int = 5,
        maxlen: int | None = None,
    ) -> None:
        """Carry *signal* through a Redis stream: at least once, one consumer per group.

        A local send appends the message to the stream and returns once Redis accepted it;
        it runs no local receiver. Receivers run in the processes that consume for a
        *group*; each group gets every message, one consumer of the group handles it. A
        process that names no group only produces.

        Args:
            signal: The signal.
            group: Consume for this consumer group (call again for more groups).
            claim_after: Seconds a message may stay unacknowledged (its receiver failed, or
                its consumer died) before any consumer of the group claims and retries it.
                Longer than your slowest receiver.
            max_deliveries: After this many deliveries without success the message moves
                to the group's dead-letter stream (see `dead_letters`).
            maxlen: The stream's approximate length limit (default: the bridge's).

        Raises:
            TypeError: Not an `AsyncSignal`, or an option of the wrong type.
            ValueError: The signal is fanned out, or an option is out of range.

        Example:
            ```python
            bridge.queue(order_created)  # web worker: produce only
            bridge.queue(order_created, group="mailer", claim_after=30.0, max_deliveries=5)
            ```
        """
        check_seconds(f"queue({signal!r}): claim_after", claim_after)
        check_count(f"queue({signal!r}): max_deliveries", max_deliveries)
        if maxlen is not None:
            check_count(f"queue({signal!r}): maxlen", maxlen)
        if group is not None and (not isinstance(group, str) or not group):
            raise TypeError(f"queue({signal!r}): group must be a non-empty string or None")
        route = self._route(signal, "queue", maxlen)
        if group is not None:
            if self._task_group is not None and group not in route.groups:
                raise RuntimeError(
                    f"queue({signal!r}, group={group!r}): the bridge is running; add groups "
                    f"before `async with bridge:`"
                )
            route.groups[group] = _Group(group, float(claim_after), max_deliveries)
        if route.hook is None:
            self._install(route)

    def discard(self, signal: AsyncSignal) -> bool:
        """Stop carrying *signal*: its sends are local again. Returns whether it was carried.

        Example:
            ```python
            bridge.discard(cache_invalidated)
            ```
        """
        route = self._routes.get(getattr(signal, "name", None) or "")
        if route is None or route.signal is not signal:
            return False
        if self._task_group is not None and route.groups:
            raise RuntimeError(f"discard({signal!r}): stop the bridge first (it consumes it)")
        del self._routes[route.name]
        if route.hook is not None:
            remove_hook(signal, route.hook)
        return True

    def register_sender(self, sender: Any, name: str) -> None:
        """Let *sender* (a class or another long-lived object) cross under *name*.

        Senders cross as ``None``, as ``str`` and ``int`` values, or as a registered name
        that each process resolves through its own registry: nothing is ever imported from
        a message. Register the same senders under the same names in every process.

        Example:
            ```python
            bridge.register_sender(Shop, "shop.Shop")
            ```
        """
        if sender is None or type(sender) in (str, int):
            raise ValueError(f"register_sender({sender!r}): None, str and int cross as they are")
        if not isinstance(name, str) or not name:
            raise TypeError(f"register_sender({describe(sender)}): name must be a string")
        known = self._senders_by_name.get(name)
        if known is not None and known is not sender:
            raise ValueError(
                f"register_sender({describe(sender)}, {name!r}): the name is already taken by "
                f"{describe(known)}"
            )
        self._senders_by_name[name] = sender
        self._names_by_sender[id(sender)] = (sender, name)

    def register_type(
        self,
        type_: type,
        name: str,
        encode: Callable[[Any], Any],
        decode: Callable[[Any], Any],
    ) -> None:
        """Let payload values of exactly *type_* cross, as ``encode(value)`` under *name*.

        ``encode`` returns JSON-ready data (it may contain other registered types);
        ``decode`` turns that data back into a value. `datetime.datetime`,
        `datetime.date`, `uuid.UUID` and `decimal.Decimal` are registered already.

        Example:
            ```python
            def encode(money):
                return [money.cents, money.currency]

            bridge.register_type(Money, "money", encode, lambda data: Money(*data))
            ```
        """
        self._codecs.register(type_, name, encode, decode)

    def register_dataclass(self, cls: type, name: str | None = None) -> None:
        """Let instances of the dataclass *cls* cross, as a JSON object of their fields.

        *name* defaults to ``module.QualName``. Its fields may hold any type that crosses.

        Example:
            ```python
            bridge.register_dataclass(Order)  # as "shop.models.Order"
            ```
        """
        if name is None:
            name = f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls)}"
        self._codecs.register_dataclass(cls, name)

    # -- running --------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the bridge is running and reached Redis at its last attempt (readiness).

        Example:
            ```python
            @app.get("/ready")
            def ready():
                return {"redis": bridge.connected}
            ```
        """
        return self._task_group is not None and self._connected

    async def start(self) -> None:
        """Connect and start the listeners; doing nothing if already running.

        Waits for the pub/sub subscription and every consumer group to exist, so a message
        published once `start` returns reaches this process. Prefer ``async with bridge:``;
        `start` and `stop` must be called from the same task.

        Raises:
            BridgeConnectionError: Redis did not answer within ``send_timeout``.
            RuntimeError: Not running on asyncio (redis-py does not support trio).

        Example:
            ```python
            await bridge.start()
            try:
                ...
            finally:
                await bridge.stop()
            ```
        """
        if self._task_group is not None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                f"{self!r}: redis-py's client needs an asyncio event loop (uvloop works); "
                f"run the bridge on anyio's asyncio backend, not trio"
            ) from None
        client = aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=self._send_timeout,
            # Bounds every command (pub/sub's blocking reads excepted): a server that
            # stops answering raises TimeoutError instead of hanging a send.
            socket_timeout=self._send_timeout,
            retry=Retry(NoBackoff(), 0),  # the bridge retries, with its own deadline
            protocol=2,
        )
        try:
            await self._with_retries("connecting", lambda: client.ping())
        except BaseException:
            await _close_quietly(client)
            raise
        self._client = client
        self._connected = True
        self._loop = asyncio.get_running_loop()
        self._outbox = []
        self._wake = asyncio.Event()
        self._room = asyncio.Semaphore(max(self._batch * 10, 1000))
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            task_group.start_soon(self._health_loop)
            task_group.start_soon(self._write)
            if any(route.mode == "fanout" for route in self._routes.values()):
                await task_group.start(self._listen_fanout)
            for route in self._routes.values():
                for group in route.groups.values():
                    await task_group.start(self._consume, route, group)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every listener and close the connection; doing nothing if not running.

        A receiver in the middle of a queue message is cancelled; its message stays pending
        and is retried after ``claim_after``.

        Example:
            ```python
            await bridge.stop()
            ```
        """
        await self._shutdown(None, None, None)

    async def __aenter__(self) -> RedisBridge:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._shutdown(exc_type, exc, traceback)

    async def _shutdown(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        task_group, self._task_group = self._task_group, None
        if task_group is None:
            return
        task_group.cancel_scope.cancel()
        try:
            await task_group.__aexit__(exc_type, exc, traceback)
        finally:
            client, self._client = self._client, None
            self._connected = False
            await _close_quietly(client)

    def statistics(self) -> BridgeStatistics:
        """The bridge's counters (a snapshot).

        Example:
            ```python
            print(bridge.statistics().dropped)
            ```
        """
        return BridgeStatistics(
            connected=self.connected, dropped=dict(self._dropped), **self._counts
        )

    async def dead_letters(
        self, signal: AsyncSignal, *, group: str, count: int = 100
    ) -> list[DeadLetter]:
        """The oldest *count* messages of *signal* that *group* gave up on, with errors.

        Raises:
            ValueError: *signal* is not queued by this bridge.

        Example:
            ```python
            for letter in await bridge.dead_letters(order_created, group="mailer"):
                print(letter.original_id, letter.deliveries, letter.error)
            ```
        """
        route = self._routes.get(getattr(signal, "name", None) or "")
        if route is None or route.signal is not signal or route.mode != "queue":
            raise ValueError(f"dead_letters({signal!r}): the signal is not queued by {self!r}")
        client = self._running_client(signal)
        key = self._dead_key(route, group)
        entries = await self._with_retries(
            f"reading {key}", lambda: client.xrange(key, count=count)
        )
        letters = []
        for stream_id, fields in entries:
            sender: Any = None
            payload: dict[str, Any] = {}
            envelope_id = ""
            try:
                envelope = self._open(fields.get(b"m", b""))
                envelope_id = envelope.id
                sender = self._resolve_sender(envelope.sender)
                payload = self._codecs.revive(envelope.payload)
            except _wire.Dropped:
                pass
            letters.append(
                DeadLetter(
                    stream_id=_text(stream_id),
                    original_id=_text(fields.get(b"id", b"")),
                    id=envelope_id,
                    sender=sender,
                    payload=payload,
                    error=_text(fields.get(b"error", b"")),
                    deliveries=int(fields.get(b"deliveries", 0)),
                    consumer=_text(fields.get(b"consumer", b"")),
                    failed_at=float(fields.get(b"at", 0.0)),
                )
            )
        return letters

    # -- sending --------------------------------------------------------------------------

    def _encode(self, route: _Route, sender: Any, payload: dict[str, Any]) -> bytes:
        """The message of one send, made inside send() so errors surface there."""
        signal = route.signal
        if self._task_group is None:
            raise RuntimeError(
                f"{signal!r} is carried by {self!r}, which is not running: send inside "
                f"`async with bridge:` (or discard the signal from the bridge)"
            )
        if sender is None or type(sender) is str or type(sender) is int:
            wire_sender: Any = sender
        else:
            known = self._names_by_sender.get(id(sender))
            if known is None or known[0] is not sender:
                raise TypeError(
                    f"{signal!r}: the sender {describe(sender)} cannot cross Redis; send None, "
                    f"a str or an int, or call bridge.register_sender(sender, 'a.name') in "
                    f"every process"
                )
            wire_sender = {_wire.SENDER_TAG: known[1]}
        plain: dict[str, Any] = {}
        for key, value in payload.items():
            try:
                plain[key] = self._codecs.plain(value)
            except _wire.Unrepresentable as exc:
                raise TypeError(
                    f"{signal!r}: payload item {key!r} holds {exc.what}, which cannot cross "
                    f"Redis as JSON; send JSON values, or register the type with "
                    f"bridge.register_type() or bridge.register_dataclass()"
                ) from None
        data = _wire.seal(
            {
                "v": _wire.VERSION,
                "id": os.urandom(16).hex(),
                "signal": route.name,
                "sender": wire_sender,
                "payload": plain,
                "origin": self.origin,
                "ts": time.time(),
            },
            self._secret,
        )
        if len(data) > self._max_bytes:
            raise ValueError(
                f"{signal!r}: the message is {len(data)} bytes, more than "
                f"max_message_bytes={self._max_bytes}; send an id and load the data instead"
            )
        return data

    async def _put(self, route: _Route, data: bytes) -> Any:
        """Publish or enqueue one encoded message, retrying until ``send_timeout``."""
        self._running_client(route.signal)
        result = await self._with_retries(route, lambda: self._submit(route, data))
        if route.mode == "fanout":
            self._counts["published"] += 1
            return result
        self._counts["enqueued"] += 1
        return _text(result)

    async def _submit(self, route: _Route, data: bytes) -> Any:
        """Hand one command to the writer and wait for Redis's reply to it."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            raise RuntimeError(
                f"{route.signal!r} was sent on another event loop than the one running "
                f"{self!r}; from a plain thread, use anyio.from_thread or "
                f"asyncio.run_coroutine_threadsafe to send on the bridge's loop"
            )
        async with self._room:  # bounded: at most max_outbox commands wait
            future: asyncio.Future[Any] = loop.create_future()
            self._outbox.append((route, data, future))
            self._wake.set()
            return await future

    async def _write(self) -> None:
        """Send waiting commands in pipelines: one round trip for every send made meanwhile.

        Concurrent sends (several requests of a web worker, say) share round trips, which
        is where a bridge can beat one connection per concurrent send.
        """
        batch: list[tuple[_Route, bytes, asyncio.Future[Any]]] = []
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._outbox:
                    batch = self._outbox[: self._batch]
                    del self._outbox[: self._batch]
                    pipe = self._client.pipeline(transaction=False)
                    for route, data, _ in batch:
                        if route.mode == "fanout":
                            pipe.publish(route.key, data)
                        else:
                            pipe.xadd(route.key, {"m": data}, maxlen=route.maxlen, approximate=True)
                    try:
                        replies = await pipe.execute(raise_on_error=False)
                    except Exception as exc:  # the connection: every command of the batch failed
                        replies = [exc] * len(batch)
                    for (_, _, future), reply in zip(batch, replies, strict=True):
                        if future.done():  # its sender was cancelled
                            continue
                        if isinstance(reply, Exception):
                            future.set_exception(reply)
                        else:
                            future.set_result(reply)
                    batch = []
        finally:  # stopped: nobody will answer these
            for _, _, future in (*batch, *self._outbox):
                if not future.done():
                    future.set_exception(RuntimeError(f"{self!r} stopped before Redis replied"))
            self._outbox.clear()

    async def _with_retries(self, what: str | _Route, command: Callable[[], Any]) -> Any:
        """Run one Redis command, retrying connection errors until ``send_timeout``."""
        deadline = time.monotonic() + self._send_timeout
        backoff = _Backoff(min(self._reconnect_base, 0.05), self._reconnect_cap)
        while True:
            try:
                result = await command()  # bounded by the client's socket timeouts
            except _CONNECTION_ERRORS as exc:
                await self._went_down(exc)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if isinstance(what, _Route):
                        verb = "publishing" if what.mode == "fanout" else "enqueueing"
                        what = f"{verb} {what.signal!r}"
                    raise BridgeConnectionError(
                        f"{self!r}: {what}: Redis at {self.url} did not answer within "
                        f"send_timeout={self._send_timeout} s ({type(exc).__name__}: {exc})"
                    ) from exc
                await anyio.sleep(min(backoff.next_delay(), remaining))
            else:
                if not self._connected:
                    await self._came_up()
                return result

    def _running_client(self, signal: AsyncSignal) -> Any:
        client = self._client
        if client is None:
            raise RuntimeError(f"{signal!r}: {self!r} is not running (`async with bridge:`)")
        return client

    # -- health ---------------------------------------------------------------------------

    async def _went_down(self, error: BaseException) -> None:
        if not self._connected or self._task_group is None:
            return
        self._connected = False
        self._down_since = time.monotonic()
        self._counts["outages"] += 1
        logger.warning(
            "%r lost Redis at %s (%s: %s); reconnecting with backoff (up to %.1f s apart)",
            self,
            self.url,
            type(error).__name__,
            error,
            self._reconnect_cap,
        )
        await bridge_disconnected.send_robust(self, error=error)

    async def _came_up(self) -> None:
        if self._connected or self._task_group is None:
            return
        self._connected = True
        outage = time.monotonic() - self._down_since
        logger.warning("%r reconnected to Redis at %s after %.1f s", self, self.url, outage)
        await bridge_connected.send_robust(self, outage=outage)

    async def _health_loop(self) -> None:
        """PING while connected; after a failure, retry with backoff until Redis is back."""
        backoff = _Backoff(self._reconnect_base, self._reconnect_cap)
        while True:
            await anyio.sleep(self._health_interval if self._connected else backoff.next_delay())
            try:
                with anyio.fail_after(self._send_timeout):
                    await self._client.ping()
            except _CONNECTION_ERRORS as exc:
                await self._went_down(exc)
            else:
                backoff.reset()
                await self._came_up()

    # -- receiving ------------------------------------------------------------------------

    def _open(self, data: bytes) -> _wire.Envelope:
        return _wire.open_envelope(data, self._secret, self._max_bytes)

    def _drop(self, dropped: _wire.Dropped, where: str) -> None:
        self._dropped[dropped.kind] += 1
        if dropped.kind not in self._logged_drops:  # once per kind, not once per message
            self._logged_drops.add(dropped.kind)
            logger.warning(
                "%r dropped a message from %s (%s); further drops of this kind are only "
                "counted (bridge.statistics().dropped)",
                self,
                where,
                dropped,
            )

    def _resolve_sender(self, wire_sender: Any) -> Any:
        if wire_sender is None or type(wire_sender) in (str, int):
            return wire_sender
        if type(wire_sender) is dict and set(wire_sender) == {_wire.SENDER_TAG}:
            name = wire_sender[_wire.SENDER_TAG]
            if isinstance(name, str) and name in self._senders_by_name:
                return self._senders_by_name[name]
            raise _wire.Dropped("unknown_sender", f"no sender is registered as {name!r}")
        raise _wire.Dropped("malformed", "the sender is not null, a string, an int or a name")

    def _inbound(
        self, data: Any, route: _Route, group: str | None
    ) -> tuple[_wire.Envelope, Any, dict[str, Any]] | None:
        """Decode one message for *route*; None (counted, logged once) when it is dropped."""
        try:
            if not isinstance(data, bytes):
                raise _wire.Dropped("malformed", "the entry has no message field")
            envelope = _wire.open_envelope(data, self._secret, self._max_bytes)
            if envelope.signal != route.name:
                raise _wire.Dropped(
                    "unknown_signal", f"{envelope.signal!r} arrived on {route.key!r}"
                )
            sender = envelope.sender
            if not (sender is None or type(sender) is str or type(sender) is int):
                sender = self._resolve_sender(sender)
            payload = self._codecs.revive(envelope.payload) if envelope.typed else envelope.payload
            if "signal" in payload or "sender" in payload:
                raise _wire.Dropped("malformed", "the payload uses a reserved name")
        except _wire.Dropped as dropped:
            self._drop(dropped, route.key if group is None else f"{route.key} ({group})")
            return None
        return envelope, sender, payload

    async def _resend(
        self, route: _Route, sender: Any, payload: dict[str, Any], delivery: Delivery
    ) -> Responses:
        """Run the local receivers for a message from Redis, without publishing it again."""
        delivery_token = _delivery.set(delivery)
        try:
            token = _resending.set(True)
            try:
                sending = route.signal.send_robust(sender, **payload)
            finally:
                _resending.reset(token)
            responses = await sending
        finally:
            _delivery.reset(delivery_token)
        self._counts["received"] += 1
        return responses

    async def _listen_fanout(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        routes = {r.key.encode(): r for r in self._routes.values() if r.mode == "fanout"}
        backoff = _Backoff(self._reconnect_base, self._reconnect_cap)
        started = False
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(*routes)
                confirmed = 0
                while confirmed < len(routes):  # wait until every SUBSCRIBE is in force
                    message = await pubsub.get_message(timeout=self._send_timeout)
                    if message is None:
                        raise TimeoutError("no SUBSCRIBE confirmation")
                    confirmed += message["type"] == "subscribe"
                await self._came_up()
                backoff.reset()
                if not started:
                    started = True
                    task_status.started()
                while True:
                    # The raw reply, [b"message", channel, data]: get_message() would wrap
                    # each one in a dict and look for handlers first, which costs as much
                    # as the rest of receiving it.
                    response = await pubsub.parse_response(block=True)
                    if not response or response[0] != b"message":
                        continue  # (PONG and other replies: nothing for us)
                    route = routes.get(response[1])
                    if route is not None:
                        try:
                            await self._fanout_message(route, response[2])
                        except _CONNECTION_ERRORS:
                            raise
                        except Exception:  # a bug must not end the listener
                            logger.exception("%r: handling a message failed", self)
            except _CONNECTION_ERRORS as exc:
                if not started:
                    raise BridgeConnectionError(f"{self!r}: subscribing failed: {exc}") from exc
                await self._went_down(exc)
            finally:
                await _close_quietly(pubsub)
            await anyio.sleep(backoff.next_delay())

    async def _guarded(self, handling: Coroutine[Any, Any, bool]) -> bool:
        """Run one queued message's handling; a bug in it is logged and must not end the
        listener (the message is then left pending, to be retried)."""
        try:
            return await handling
        except _CONNECTION_ERRORS:
            raise
        except Exception:
            logger.exception("%r: handling a message failed unexpectedly", self)
            return False

    async def _fanout_message(self, route: _Route, data: Any) -> None:
        decoded = self._inbound(data, route, None)
        if decoded is None:
            return
        envelope, sender, payload = decoded
        if envelope.origin == self.origin:
            return  # our own message: its local receivers ran when it was sent
        delivery = Delivery(
            envelope.id, envelope.signal, envelope.origin, envelope.timestamp, "fanout"
        )
        await self._resend(route, sender, payload, delivery)

    # -- queue consumers ------------------------------------------------------------------

    def _dead_key(self, route: _Route, group: str) -> str:
        return f"{route.key}:dead:{group}"

    async def _consume(
        self, route: _Route, group: _Group, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        """One consumer of *group* for *route*: own pending first, then new and claimed."""
        backoff = _Backoff(self._reconnect_base, self._reconnect_cap)
        claim_every = max(group.claim_after / 2, 0.05)
        # Shorter than the socket timeout, which would otherwise end the blocking read.
        block_ms = max(int(min(claim_every, 1.0, self._send_timeout / 2) * 1000), 1)
        started = False
        while True:
            try:
                await self._create_group(route, group)
                if not started:
                    started = True
                    task_status.started()
                await self._came_up()
                backoff.reset()
                await self._own_pending(route, group)
                next_claim = time.monotonic() + claim_every
                while True:
                    if time.monotonic() >= next_claim:
                        await self._claim_idle(route, group)
                        next_claim = time.monotonic() + claim_every
                    reply = await self._client.xreadgroup(
                        group.name,
                        self.consumer,
                        {route.key: ">"},
                        count=self._batch,
                        block=block_ms,
                    )
                    if reply:
                        await self._handle(route, group, reply[0][1], None)
            except _CONNECTION_ERRORS as exc:
                if not started:
                    raise BridgeConnectionError(f"{self!r}: {route.key}: {exc}") from exc
                await self._went_down(exc)
            except redis_errors.ResponseError as exc:
                # NOGROUP after a restart that lost the data, say: create the group again.
                logger.warning("%r: consuming %s failed (%s); retrying", self, route.key, exc)
            await anyio.sleep(backoff.next_delay())

    async def _create_group(self, route: _Route, group: _Group) -> None:
        try:
            # From id 0: a group created after producers started still gets their messages.
            await self._client.xgroup_create(route.key, group.name, id="0", mkstream=True)
        except redis_errors.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _own_pending(self, route: _Route, group: _Group) -> None:
        """Re-read what this consumer had read but not acknowledged (after a restart)."""
        last = "0"
        while True:
            reply = await self._client.xreadgroup(
                group.name, self.consumer, {route.key: last}, count=self._batch
            )
            entries = reply[0][1] if reply else []
            if not entries:
                return
            await self._handle(route, group, entries, await self._counts_of(route, group, entries))
            last = _text(entries[-1][0])

    async def _claim_idle(self, route: _Route, group: _Group) -> None:
        """Take over messages idle longer than claim_after, from any consumer (XAUTOCLAIM)."""
        cursor = "0-0"
        for _ in range(1000):  # bounded: each round claims up to `batch` entries
            reply = await self._client.xautoclaim(
                route.key,
                group.name,
                self.consumer,
                min_idle_time=int(group.claim_after * 1000),
                start_id=cursor,
                count=self._batch,
            )
            cursor, entries = _text(reply[0]), reply[1]
            if entries:
                self._counts["claimed"] += len(entries)
                counts = await self._counts_of(route, group, entries)
                await self._handle(route, group, entries, counts)
            if cursor == "0-0":
                return

    async def _counts_of(
        self, route: _Route, group: _Group, entries: list[Any]
    ) -> dict[bytes, int]:
        """Delivery counts of *entries*, pending for this consumer (XPENDING)."""
        pending = await self._client.xpending_range(
            route.key,
            group.name,
            min=entries[0][0],
            max=entries[-1][0],
            count=len(entries) * 2 + 10,
            consumername=self.consumer,
        )
        return {item["message_id"]: int(item["times_delivered"]) for item in pending}

    async def _handle(
        self,
        route: _Route,
        group: _Group,
        entries: list[Any],
        counts: dict[bytes, int] | None,
    ) -> None:
        """Handle entries in order; acknowledge the successful ones in one XACK."""
        done: list[Any] = []
        read_at = time.monotonic()
        try:
            for index, (stream_id, fields) in enumerate(entries):
                if index and time.monotonic() - read_at > group.claim_after / 2:
                    # A long batch: acknowledge what is done, and reset the idle time of
                    # the rest (JUSTID leaves their delivery counts alone), so that no
                    # other consumer claims them from under us.
                    if done:
                        await self._client.xack(route.key, group.name, *done)
                        self._counts["acknowledged"] += len(done)
                        done = []
                    rest = [entry[0] for entry in entries[index:]]
                    await self._client.xclaim(
                        route.key, group.name, self.consumer, 0, rest, justid=True
                    )
                    read_at = time.monotonic()
                count = 1 if counts is None else counts.get(stream_id, 1)
                handled = await self._guarded(
                    self._handle_one(route, group, stream_id, fields, count)
                )
                if handled:
                    done.append(stream_id)
        finally:
            if done:
                with anyio.CancelScope(shield=True), anyio.move_on_after(self._send_timeout):
                    await self._client.xack(route.key, group.name, *done)
                    self._counts["acknowledged"] += len(done)

    async def _handle_one(
        self, route: _Route, group: _Group, stream_id: Any, fields: Any, count: int
    ) -> bool:
        """Run one message; whether to acknowledge it now."""
        data = fields.get(b"m") if isinstance(fields, dict) else None
        decoded = self._inbound(data, route, group.name)
        if decoded is None:
            return True  # dropped, counted and logged: never retried
        envelope, sender, payload = decoded
        if count > group.max_deliveries:  # its last attempt never finished (consumer died?)
            await self._dead_letter(
                route,
                group,
                stream_id,
                data,
                f"gave up after {count - 1} deliveries: the last attempt did not finish",
                count - 1,
            )
            return False
        delivery = Delivery(
            envelope.id,
            envelope.signal,
            envelope.origin,
            envelope.timestamp,
            "queue",
            _text(stream_id),
            group.name,
            count,
        )
        responses = await self._resend(route, sender, payload, delivery)
        errors = [
            (receiver, response)
            for receiver, response in responses
            if isinstance(response, Exception)
        ]
        if not errors:
            return True
        self._counts["failed"] += 1
        if count >= group.max_deliveries:
            receiver, error = errors[-1]
            message = f"{type(error).__name__}: {error} (in {describe(receiver)})"
            await self._dead_letter(route, group, stream_id, data, message, count)
        return False  # pending: retried after claim_after

    async def _dead_letter(
        self,
        route: _Route,
        group: _Group,
        stream_id: Any,
        data: Any,
        error: str,
        deliveries: int,
    ) -> None:
        """Move one message to the group's dead-letter stream and acknowledge it, atomically."""
        pipe = self._client.pipeline(transaction=True)
        pipe.xadd(
            self._dead_key(route, group.name),
            {
                "m": data,
                "id": stream_id,
                "error": error,
                "deliveries": deliveries,
                "consumer": self.consumer,
                "at": repr(time.time()),
            },
            maxlen=route.maxlen,
            approximate=True,
        )
        pipe.xack(route.key, group.name, stream_id)
        await pipe.execute()
        self._counts["dead_lettered"] += 1
        logger.error(
            "%r: message %s of %r moved to %s after %d deliveries: %s",
            self,
            _text(stream_id),
            route.name,
            self._dead_key(route, group.name),
            deliveries,
            error,
        )

    # -- registration internals -----------------------------------------------------------

    def _route(
        self,
        signal: AsyncSignal,
        mode: Literal["fanout", "queue"],
        maxlen: int | None = None,
    ) -> _Route:
        if not isinstance(signal, AsyncSignal):
            raise TypeError(f"RedisBridge.{mode}() takes AsyncSignal objects, got {signal!r}")
        name = signal.name
        if not name:
            raise ValueError(
                f"{mode}({signal!r}): a signal crosses Redis under its name, and this one has "
                f"none; create it as AsyncSignal({signal.label.rpartition('.')[2]!r})"
            )
        route = self._routes.get(name)
        if route is not None:
            if route.signal is not signal:
                raise ValueError(
                    f"{mode}({signal!r}): {self!r} already carries another signal named "
                    f"{name!r}; signal names must be unique across the app"
                )
            if route.mode != mode:
                raise ValueError(
                    f"{mode}({signal!r}): the signal is already registered with "
                    f"{route.mode}(); a signal is either fanned out or queued"
                )
            if maxlen is not None:
                route.maxlen = maxlen
            return route
        if self._task_group is not None:
            raise RuntimeError(
                f"{mode}({signal!r}): {self!r} is running; register signals before "
                f"`async with bridge:`"
            )
        key = f"{self.prefix}:{mode}:{name}"
        route = _Route(signal, name, mode, key, maxlen if maxlen is not None else self._maxlen)
        self._routes[name] = route
        return route

    def _install(self, route: _Route) -> None:
        hook = _BridgeHook(self, route)
        if find_hook(route.signal, _BridgeHook) is not None:
            del self._routes[route.name]
            raise ValueError(
                f"{route.signal!r} is already carried by another RedisBridge; one bridge per signal"
            )
        add_hook(route.signal, hook, _BRIDGE)
        route.hook = hook


async def _close_quietly(closable: Any) -> None:
    """Close a client or pub/sub connection, even while cancelled, without hanging."""
    if closable is None:
        return
    with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
        try:
            await closable.aclose()
        except Exception:  # closing a broken connection may fail; it is closed either way
            logger.debug("closing %r failed", closable, exc_info=True)
