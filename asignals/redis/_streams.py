"""The streams consumer: queued signals, at least once, one consumer of a group each.

A `Consumer` reads one signal's stream for one consumer group: first what this consumer
had read and not acknowledged (after a restart), then new entries, and every
``claim_after / 2`` it claims entries other consumers left idle longer than ``claim_after``
(XAUTOCLAIM). An entry is acknowledged once every receiver succeeded; one whose receivers
failed stays pending and is retried, and after ``max_deliveries`` it moves to the group's
dead-letter stream (`_dead_letters`), as does a message that is dropped (it does not
decode, or its signature, sender or type is unknown here), at once. An entry requeued for
another group is acknowledged untouched. With ``dedupe``, the group records each envelope
id it finished, and a message whose id is recorded is acknowledged without running the
receivers again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from .. import _wire
from .._receivers import describe
from . import _dead_letters
from ._client import CONNECTION_ERRORS, ResponseError, text
from ._health import Health
from ._hook import resend
from ._messages import Messages
from ._types import BridgeConnectionError, Counters, DeadLetter, Delivery, Settings

if TYPE_CHECKING:
    from ._routes import Group, Route

logger = logging.getLogger("asignals.redis")


def done_key(route: Route, group: str, envelope_id: str) -> str:
    """The record that *group* finished the message *envelope_id* (``dedupe``)."""
    return f"{route.key}:done:{group}:{envelope_id}"


class Consumer:
    """One consumer of *group* for *route*, for as long as the bridge runs."""

    def __init__(
        self,
        bridge: object,
        client: Any,
        route: Route,
        group: Group,
        name: str,
        health: Health,
        messages: Messages,
        counters: Counters,
        settings: Settings,
    ) -> None:
        self.bridge = bridge  # named in logs and errors
        self._client = client
        self._route = route
        self._group = group
        self._name = name  # this consumer's name within the group
        self._health = health
        self._messages = messages
        self._counters = counters
        self._batch = settings.batch
        self._send_timeout = settings.send_timeout

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Own pending first, then new and claimed entries; started once the group exists."""
        route, group = self._route, self._group
        backoff = self._health.backoff()
        claim_every = max(group.claim_after / 2, 0.05)
        # Shorter than the socket timeout, which would otherwise end the blocking read.
        block_ms = max(int(min(claim_every, 1.0, self._send_timeout / 2) * 1000), 1)
        started = False
        while True:
            try:
                await self._create_group()
                if not started:
                    started = True
                    task_status.started()
                await self._health.came_up()
                backoff.reset()
                await self._own_pending()
                next_claim = time.monotonic() + claim_every
                while True:
                    if time.monotonic() >= next_claim:
                        await self._claim_idle()
                        next_claim = time.monotonic() + claim_every
                    reply = await self._client.xreadgroup(
                        group.name,
                        self._name,
                        {route.key: ">"},
                        count=self._batch,
                        block=block_ms,
                    )
                    if reply:
                        await self._handle(reply[0][1], None)
            except CONNECTION_ERRORS as exc:
                if not started:
                    raise BridgeConnectionError(f"{self.bridge!r}: {route.key}: {exc}") from exc
                await self._health.went_down(exc)
            except ResponseError as exc:
                # NOGROUP after a restart that lost the data, say: create the group again.
                logger.warning(
                    "%r: consuming %s failed (%s); retrying", self.bridge, route.key, exc
                )
            await anyio.sleep(backoff.next_delay())

    async def _create_group(self) -> None:
        try:
            # From id 0: a group created after producers started still gets their messages.
            await self._client.xgroup_create(
                self._route.key, self._group.name, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _own_pending(self) -> None:
        """Re-read what this consumer had read but not acknowledged (after a restart)."""
        last = "0"
        while True:
            reply = await self._client.xreadgroup(
                self._group.name, self._name, {self._route.key: last}, count=self._batch
            )
            entries = reply[0][1] if reply else []
            if not entries:
                return
            await self._handle(entries, await self._counts_of(entries))
            last = text(entries[-1][0])

    async def _claim_idle(self) -> None:
        """Take over messages idle longer than claim_after, from any consumer (XAUTOCLAIM)."""
        cursor = "0-0"
        for _ in range(1000):  # bounded: each round claims up to `batch` entries
            reply = await self._client.xautoclaim(
                self._route.key,
                self._group.name,
                self._name,
                min_idle_time=int(self._group.claim_after * 1000),
                start_id=cursor,
                count=self._batch,
            )
            cursor, entries = text(reply[0]), reply[1]
            if entries:
                self._counters.claimed += len(entries)
                await self._handle(entries, await self._counts_of(entries))
            if cursor == "0-0":
                return

    async def _counts_of(self, entries: list[Any]) -> dict[bytes, int]:
        """Delivery counts of *entries*, pending for this consumer (XPENDING)."""
        pending = await self._client.xpending_range(
            self._route.key,
            self._group.name,
            min=entries[0][0],
            max=entries[-1][0],
            count=len(entries) * 2 + 10,
            consumername=self._name,
        )
        return {item["message_id"]: int(item["times_delivered"]) for item in pending}

    async def _handle(self, entries: list[Any], counts: dict[bytes, int] | None) -> None:
        """Handle entries in order; acknowledge the successful ones in one XACK."""
        key, group = self._route.key, self._group
        done: list[Any] = []
        read_at = time.monotonic()
        try:
            for index, (stream_id, fields) in enumerate(entries):
                if index and time.monotonic() - read_at > group.claim_after / 2:
                    # A long batch: acknowledge what is done, and reset the idle time of
                    # the rest (JUSTID leaves their delivery counts alone), so that no
                    # other consumer claims them from under us.
                    if done:
                        await self._client.xack(key, group.name, *done)
                        self._counters.acknowledged += len(done)
                        done = []
                    rest = [entry[0] for entry in entries[index:]]
                    await self._client.xclaim(key, group.name, self._name, 0, rest, justid=True)
                    read_at = time.monotonic()
                count = 1 if counts is None else counts.get(stream_id, 1)
                if await self._guarded(self._handle_one(stream_id, fields, count)):
                    done.append(stream_id)
        finally:
            if done:
                with anyio.CancelScope(shield=True), anyio.move_on_after(self._send_timeout):
                    await self._client.xack(key, group.name, *done)
                    self._counters.acknowledged += len(done)

    async def _guarded(self, handling: Coroutine[Any, Any, bool]) -> bool:
        """Run one message's handling; a bug in it is logged and must not end the consumer
        (the message is then left pending, to be retried)."""
        try:
            return await handling
        except CONNECTION_ERRORS:
            raise
        except Exception:
            logger.exception("%r: handling a message failed unexpectedly", self.bridge)
            return False

    async def _handle_one(self, stream_id: Any, fields: Any, count: int) -> bool:
        """Run one message; whether to acknowledge it now."""
        route, group = self._route, self._group
        if not isinstance(fields, dict):  # pragma: no cover - XREADGROUP gives a dict
            fields = {}
        target = fields.get(_dead_letters.TARGET_FIELD)
        if target is not None and target != group.name_bytes:
            return True  # requeued for another group (see _dead_letters.requeue)
        data = fields.get(b"m")
        decoded = self._messages.inbound(data, route, group.name)
        if isinstance(decoded, _wire.Dropped):
            # Never for a receiver, but kept where an operator can see it (and requeue
            # it once, say, the key is fixed); the drop was counted and logged once.
            await self._dead_letter(stream_id, data, f"dropped ({decoded})", count, log=False)
            return False  # acknowledged with the move
        envelope, sender, payload = decoded
        done = None
        if group.dedupe is not None:
            done = done_key(route, group.name, envelope.id)
            if await self._client.exists(done):
                self._counters.duplicates += 1
                return True
        if count > group.max_deliveries:  # its last attempt never finished (consumer died?)
            await self._dead_letter(
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
            text(stream_id),
            group.name,
            count,
        )
        responses = await resend(route, sender, payload, delivery, self._counters)
        errors = [
            (receiver, response)
            for receiver, response in responses
            if isinstance(response, Exception)
        ]
        if not errors:
            if done is not None and group.dedupe is not None:
                # Recorded before the acknowledgement: a crash in between leaves the
                # message pending, and its redelivery is recognised here.
                await self._client.set(done, b"1", nx=True, px=max(int(group.dedupe * 1000), 1))
            return True
        self._counters.failed += 1
        if count >= group.max_deliveries:
            receiver, error = errors[-1]
            message = f"{type(error).__name__}: {error} (in {describe(receiver)})"
            await self._dead_letter(stream_id, data, message, count)
        return False  # pending: retried after claim_after

    async def _dead_letter(
        self, stream_id: Any, data: Any, error: str, deliveries: int, *, log: bool = True
    ) -> None:
        """Move one message to the group's dead-letter stream and acknowledge it, atomically."""
        route, group = self._route, self._group
        dead = _dead_letters.dead_key(route.key, group.name)
        pipe = self._client.pipeline(transaction=True)
        pipe.xadd(
            dead,
            _dead_letters.dead_fields(data, stream_id, error, deliveries, self._name),
            maxlen=route.maxlen,
            approximate=True,
        )
        pipe.xack(route.key, group.name, stream_id)
        await pipe.execute()
        self._counters.dead_lettered += 1
        if log:
            logger.error(
                "%r: message %s of %r moved to %s after %d deliveries: %s",
                self.bridge,
                text(stream_id),
                route.name,
                dead,
                deliveries,
                error,
            )


async def read_dead_letters(
    client: Any, route: Route, group: str, count: int, health: Health, messages: Messages
) -> list[DeadLetter]:
    """The oldest *count* entries of *group*'s dead-letter stream, decoded as far as they
    can be (see `RedisBridge.dead_letters`)."""
    dead = _dead_letters.dead_key(route.key, group)
    entries = await health.retrying(
        f"reading {dead}", lambda: _dead_letters.read(client, dead, count)
    )
    letters = []
    for stream_id, fields in entries:
        sender: Any = None
        payload: dict[str, Any] = {}
        envelope_id = ""
        try:
            envelope = messages.open(fields.get(b"m", b""))
            envelope_id = envelope.id
            sender = messages.resolve_sender(envelope.sender)
            revived = messages.codecs.revive(envelope.payload)
            payload = revived if type(revived) is dict else {}
        except Exception:
            pass
        letters.append(
            DeadLetter(
                stream_id=stream_id,
                original_id=text(fields.get(b"id", b"")),
                id=envelope_id,
                sender=sender,
                payload=payload,
                error=text(fields.get(b"error", b"")),
                deliveries=_number(int, fields.get(b"deliveries")),
                consumer=text(fields.get(b"consumer", b"")),
                failed_at=_number(float, fields.get(b"at")),
            )
        )
    return letters


def _number(kind: type[int] | type[float], value: Any) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        return kind(0)
