"""`RedisBridge`: what it carries and the parts it owns; each part is a module of its own.

* `_routes`: the signals it carries and how (registration and its rules);
* `_hook`: a send of a carried signal reaches the writer, a message from Redis reaches
  the local receivers;
* `_messages`: sends encoded, messages from Redis decoded or dropped, in the format of
  `asignals._wire` (the envelope and the value codecs, shared with the outbox);
* `_lifecycle`: start and stop, and the task group that owns every background task;
* `_writer`: the pipelined writer every send's message goes through;
* `_fanout`: the pub/sub listener;
* `_streams`: a consumer per queued signal and group, claiming, duplicates;
* `_dead_letters`: the dead-letter streams: read, requeue, purge (also for the CLI,
  `_cli`);
* `_health`: connected or not, backoff, retries until ``send_timeout``, the PING;
* `_client`: redis-py itself, the only module that imports it;
* `_types`: the public types, the settings and the counters the parts share.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any

from .._signal import AsyncSignal
from . import _dead_letters
from ._health import Health
from ._hook import BridgeHook
from ._lifecycle import Lifecycle
from ._messages import Messages
from ._routes import Route, Routes
from ._streams import read_dead_letters
from ._types import BridgeStatistics, Counters, DeadLetter, Settings, not_running
from ._writer import Writer


class RedisBridge:
    """Carries chosen signals between processes through Redis (one server, or a cluster).

    Register signals with `fanout` and `queue`, then run the bridge with ``async with
    bridge:`` (an ASGI lifespan is a good place). Every background task (the pub/sub
    listener, one consumer per queued signal and group, a health check) belongs to a task
    group that ``async with`` owns; leaving the block stops them all.

    Args:
        url: A redis-py URL, ``redis://[:password@]host:port/db``.
        prefix: Starts every key and channel name, so several apps can share a server.
        secret: Sign every message with HMAC-SHA256 and drop incoming ones that are not
            signed with the same secret (at least 16 characters). Every process of the
            app needs the same secret; a queued message a process cannot verify goes to
            the dead letters, to be requeued once its key is fixed.
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
        cluster: *url* is any node of a Redis Cluster (redis-py's ``RedisCluster``).
            Each signal's keys share one hash slot (its name is a hash tag:
            ``<prefix>:queue:{<name>}``), different signals spread over the slots, and
            fanout uses sharded pub/sub (``SPUBLISH``, Redis 7), which reaches every
            process whichever node it is connected to.

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
        cluster: bool = False,
    ) -> None:
        settings = Settings.checked(
            url,
            prefix,
            secret,
            send_timeout,
            max_message_bytes,
            maxlen,
            batch,
            reconnect_base,
            reconnect_cap,
            health_interval,
            cluster,
        )
        self.url = url
        self.prefix = prefix
        host = socket.gethostname()
        self.consumer = consumer if consumer is not None else f"{host}:{os.getpid()}"
        self.origin = f"{host}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        # The parts, which share the counters and report to the health.
        counters = self._counters = Counters()
        health = self._health = Health(self, settings, counters)
        messages = self._messages = Messages(self, self.origin, settings, counters)
        writer = Writer(self, health, counters, settings.batch)
        lifecycle = Lifecycle(self, settings, self.consumer, health, writer, messages, counters)
        self._lifecycle = lifecycle
        hook = functools.partial(BridgeHook, encode=lifecycle.encode, put=writer.put)
        self._routes = Routes(self, settings, hook)

    def __repr__(self) -> str:
        state = "running" if self._lifecycle.running else "stopped"
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
            self._routes.fanout(signal, running=self._lifecycle.running)

    def queue(
        self,
        signal: AsyncSignal,
        *,
        group: str | None = None,
        claim_after: float = 30.0,
        max_deliveries: int = 5,
        maxlen: int | None = None,
        dedupe: float | None = None,
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
            dedupe: Seconds the *group* remembers each message it finished (by envelope
                id, a Redis key with that expiry): a message with a remembered id, sent or
                delivered again, is acknowledged without running the receivers (counted
                in `BridgeStatistics.duplicates`). A consumer that crashes after the
                receivers ran and before the record is written still runs them twice.

        Raises:
            TypeError: Not an `AsyncSignal`, or an option of the wrong type.
            ValueError: The signal is fanned out, an option is out of range, or *dedupe*
                without *group*.

        Example:
            ```python
            bridge.queue(order_created)  # web worker: produce only
            bridge.queue(order_created, group="mailer", claim_after=30.0, max_deliveries=5)
            bridge.queue(order_created, group="billing", dedupe=3600)
            ```
        """
        self._routes.queue(
            signal,
            group,
            claim_after,
            max_deliveries,
            maxlen,
            dedupe,
            running=self._lifecycle.running,
        )

    def discard(self, signal: AsyncSignal) -> bool:
        """Stop carrying *signal*: its sends are local again. Returns whether it was carried.

        Example:
            ```python
            bridge.discard(cache_invalidated)
            ```
        """
        return self._routes.discard(signal, running=self._lifecycle.running)

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
        self._messages.register_sender(sender, name)

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
        self._messages.codecs.register(type_, name, encode, decode)

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
        self._messages.codecs.register_dataclass(cls, name)

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
        return self._health.connected

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
        await self._lifecycle.start(self._routes)

    async def stop(self) -> None:
        """Stop every listener and close the connection; doing nothing if not running.

        A receiver in the middle of a queue message is cancelled; its message stays pending
        and is retried after ``claim_after``.

        Example:
            ```python
            await bridge.stop()
            ```
        """
        await self._lifecycle.stop(None, None, None)

    async def __aenter__(self) -> RedisBridge:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._lifecycle.stop(exc_type, exc, traceback)

    def statistics(self) -> BridgeStatistics:
        """The bridge's counters (a snapshot).

        Example:
            ```python
            print(bridge.statistics().dropped)
            ```
        """
        return self._counters.snapshot(self.connected)

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
        route, client = self._queued(signal, "dead_letters", group)
        return await read_dead_letters(client, route, group, count, self._health, self._messages)

    async def requeue(
        self, signal: AsyncSignal, *, group: str, ids: list[str] | None = None
    ) -> int:
        """Deliver *group*'s dead letters of *signal* again, to that group only; how many.

        Each one is appended to the signal's stream again with the same bytes (so the same
        envelope id, for idempotent receivers) and addressed to *group*: the consumers of
        other groups, which may have finished it already, acknowledge it untouched. It is
        removed from the dead-letter stream in the same transaction.

        Args:
            signal: A signal this bridge queues.
            group: The consumer group whose dead letters to requeue.
            ids: `DeadLetter.stream_id` values; ``None`` requeues all of them.

        Raises:
            ValueError: *signal* is not queued by this bridge, or an id is not a stream id.
            RuntimeError: The bridge is not running.

        Example:
            ```python
            letters = await bridge.dead_letters(order_created, group="mailer")
            await bridge.requeue(order_created, group="mailer", ids=[letters[0].stream_id])
            await bridge.requeue(order_created, group="mailer")  # all of them
            ```
        """
        route, client = self._queued(signal, "requeue", group, ids)
        return int(
            await self._health.retrying(
                f"requeueing dead letters of {signal!r}",
                lambda: _dead_letters.requeue(client, route.key, group, ids, route.maxlen),
            )
        )

    async def purge_dead_letters(
        self, signal: AsyncSignal, *, group: str, ids: list[str] | None = None
    ) -> int:
        """Delete *group*'s dead letters of *signal*; how many were deleted.

        Args:
            signal: A signal this bridge queues.
            group: The consumer group whose dead letters to delete.
            ids: `DeadLetter.stream_id` values; ``None`` deletes all of them.

        Raises:
            ValueError: *signal* is not queued by this bridge, or an id is not a stream id.
            RuntimeError: The bridge is not running.

        Example:
            ```python
            await bridge.purge_dead_letters(order_created, group="mailer")
            ```
        """
        route, client = self._queued(signal, "purge_dead_letters", group, ids)
        return int(
            await self._health.retrying(
                f"purging dead letters of {signal!r}",
                lambda: _dead_letters.purge(client, route.key, group, ids),
            )
        )

    def _queued(
        self, signal: AsyncSignal, method: str, group: str, ids: list[str] | None = None
    ) -> tuple[Route, Any]:
        """The route of a queued *signal* and the running client, for *method*'s checks."""
        route = self._routes.find(signal)
        if route is None or route.mode != "queue":
            raise ValueError(f"{method}({signal!r}): the signal is not queued by {self!r}")
        if not isinstance(group, str) or not group:
            raise TypeError(f"{method}({signal!r}): group must be a non-empty string")
        _dead_letters.check_ids(f"{method}({signal!r})", ids)
        client = self._lifecycle.client
        if client is None:
            raise not_running(signal, self)
        return route, client
