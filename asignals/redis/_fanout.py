"""The fanout listener: one pub/sub connection subscribed to every fanned-out signal's
channel, re-sending each message from another process to the local receivers.

At most once: a message published while the listener is reconnecting is never received.
The listener outlives disconnects (it subscribes again, with backoff) and bugs in handling
one message (logged); only stopping the bridge ends it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from .. import _wire
from ._client import CONNECTION_ERRORS, close_quietly, text
from ._health import Health
from ._hook import resend
from ._messages import Messages
from ._types import BridgeConnectionError, Counters, Delivery

if TYPE_CHECKING:
    from ._routes import Route

logger = logging.getLogger("asignals.redis")


class FanoutListener:
    """Listens for the fanned-out *routes* of one bridge, for as long as it runs."""

    def __init__(
        self,
        bridge: object,
        client: Any,
        routes: Iterable[Route],
        health: Health,
        messages: Messages,
        counters: Counters,
        send_timeout: float,
    ) -> None:
        self.bridge = bridge  # named in logs and errors
        self._client = client
        self._routes = {route.key.encode(): route for route in routes}  # by channel
        self._sharded = any(route.sharded for route in routes)
        self._health = health
        self._messages = messages
        self._counters = counters
        self._send_timeout = send_timeout

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Subscribe, report started once every SUBSCRIBE is in force, then listen."""
        routes = self._routes
        backoff = self._health.backoff()
        started = False
        while True:
            pubsub = self._client.pubsub()
            try:
                await self._subscribe(pubsub)
                await self._health.came_up()
                backoff.reset()
                if not started:
                    started = True
                    task_status.started()
                if self._sharded:
                    await self._listen_sharded(pubsub)
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
                            await self._message(route, response[2])
                        except CONNECTION_ERRORS:
                            raise
                        except Exception:  # a bug must not end the listener
                            logger.exception("%r: handling a message failed", self.bridge)
            except CONNECTION_ERRORS as exc:
                if not started:
                    raise BridgeConnectionError(
                        f"{self.bridge!r}: subscribing failed: {exc}"
                    ) from exc
                await self._health.went_down(exc)
            finally:
                await close_quietly(pubsub)
            await anyio.sleep(backoff.next_delay())

    async def _subscribe(self, pubsub: Any) -> None:
        """Subscribe to every channel; return once each SUBSCRIBE is in force."""
        routes = self._routes
        if self._sharded:
            await pubsub.ssubscribe(*routes)
        else:
            await pubsub.subscribe(*routes)
        kind = "ssubscribe" if self._sharded else "subscribe"
        confirmed = 0
        with anyio.fail_after(self._send_timeout):  # TimeoutError: retried as a disconnect
            while confirmed < len(routes):
                if self._sharded:
                    message = await pubsub.get_sharded_message(timeout=0.1)
                else:
                    message = await pubsub.get_message(timeout=self._send_timeout)
                confirmed += message is not None and text(message["type"]) == kind

    async def _listen_sharded(self, pubsub: Any) -> None:
        """Re-send each sharded message, however many nodes the channels live on."""
        routes = self._routes
        while True:
            message = await pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None or text(message["type"]) != "smessage":
                continue
            route = routes.get(message["channel"])
            if route is not None:
                try:
                    await self._message(route, message["data"])
                except CONNECTION_ERRORS:
                    raise
                except Exception:  # a bug must not end the listener
                    logger.exception("%r: handling a message failed", self.bridge)

    async def _message(self, route: Route, data: Any) -> None:
        messages = self._messages
        if type(data) is bytes and data.startswith(messages.echo, messages.echo_at):
            return  # our own message: its local receivers ran when it was sent
        decoded = messages.inbound(data, route, None)
        if isinstance(decoded, _wire.Dropped):
            return
        envelope, sender, payload = decoded
        delivery = Delivery(
            envelope.id, envelope.signal, envelope.origin, envelope.timestamp, "fanout"
        )
        await resend(route, sender, payload, delivery, self._counters)
