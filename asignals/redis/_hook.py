"""The send hook: how a local send reaches Redis, and how a message from Redis reaches
the local receivers without going back (the package docstring tells how, in prose).

`BridgeHook` is installed on each signal the bridge carries; it encodes the message when
``send()`` is called and adds the `Outgoing` entry that hands it to the writer. `resend`
runs the local receivers of a message from Redis, with its `Delivery` for
`current_delivery`, while `_resending` tells the hook to leave that send alone.
"""

from __future__ import annotations

import contextvars
import itertools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .._delivery import Delivery, delivering
from .._plans import Plan, Responses
from .._receivers import ASYNC
from ._types import Counters

if TYPE_CHECKING:
    from ._routes import Route

Encode = Callable[["Route", Any, dict[str, Any]], bytes]
"""Makes the message of one send (route, sender, payload)."""

Put = Callable[["Route", bytes], Awaitable[Any]]
"""Publishes or enqueues one message, returning Redis's reply."""

_resending: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "asignals.redis.resending", default=False
)


class Outgoing:
    """The plan entry of one send: publishes (or enqueues) the message encoded for it."""

    __slots__ = ("data", "put", "route")

    def __init__(self, put: Put, route: Route, data: bytes) -> None:
        self.put = put
        self.route = route
        self.data = data

    async def __call__(self, **_: Any) -> Any:
        return await self.put(self.route, self.data)

    def __repr__(self) -> str:
        verb = "publish" if self.route.mode == "fanout" else "enqueue"
        return f"<RedisBridge {verb} {self.route.name!r} to {self.route.key!r}>"


class BridgeHook:
    """The send hook the bridge installs on a signal (see asignals/_hooks.py)."""

    __slots__ = ("encode", "put", "route")

    def __init__(self, route: Route, encode: Encode, put: Put) -> None:
        self.route = route
        self.encode = encode
        self.put = put

    def __call__(self, sender: Any, payload: dict[str, Any], plan: Plan) -> Plan:
        if _resending.get():  # a message from Redis, re-sent here: only the local plan
            return plan
        data = self.encode(self.route, sender, payload)
        entry = (itertools.repeat(Outgoing(self.put, self.route, data)).__next__, ASYNC)
        if self.route.mode == "queue":
            return (entry,)  # receivers run where a group consumes, not here
        return (entry, *plan)

    def observes(self, sender: Any) -> bool:
        return True  # another process may listen: a send is always worth making


async def resend(
    route: Route,
    sender: Any,
    payload: dict[str, Any],
    delivery: Delivery,
    counters: Counters,
) -> Responses:
    """Run the local receivers for a message from Redis, without publishing it again."""
    with delivering(delivery):
        token = _resending.set(True)
        try:
            sending = route.signal.send_robust(sender, **payload)
        finally:
            _resending.reset(token)
        responses = await sending
    counters.received += 1
    return responses
