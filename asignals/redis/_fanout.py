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

from . import _wire
from ._client import CONNECTION_ERRORS, close_quietly
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
                await pubsub.subscribe(*routes)
                confirmed = 0
                while confirmed < len(routes):  # wait until every SUBSCRIBE is in force
                    message = await pubsub.get_message(timeout=self._send_timeout)
                    if message is None:
                        raise TimeoutError("no SUBSCRIBE confirmation")
                    confirmed += message["type"] == "subscribe"
                await self._health.came_up()
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
