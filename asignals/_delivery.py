"""What a receiver knows of the delivery it is running for: `Delivery` and
`current_delivery()`.

A plain local send has no delivery. A message from Redis (`asignals.redis`) and an event
relayed from a transactional outbox (`asignals.sqlalchemy.Outbox`) do: both are delivered
at least once, and the delivery's ``id`` (the same in every delivery of one event) is what
makes a receiver idempotent.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, NamedTuple


class Delivery(NamedTuple):
    """What a receiver is handling, when it is not a plain local send.

    Read it with `current_delivery()` inside a receiver; use ``id`` (the same in every
    delivery of one event) to make a receiver idempotent.

    Attributes:
        id: The event's id: the envelope id of a message from Redis, the row id of an
            event from an outbox.
        signal: The signal's name.
        origin: Where it was sent from (``host:pid:random``).
        timestamp: When it was sent (``time.time()`` of the sender; for an outbox event,
            the database's clock when it was written).
        mode: ``"fanout"`` or ``"queue"`` (Redis), ``"outbox"`` (an outbox's relay).
        stream_id: The Redis Streams entry id (queue), else ``None``.
        group: The consumer group handling it (queue), else ``None``.
        delivery_count: How many times it has been delivered, this time included (1 on
            the first attempt; always 1 for fanout).

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
    mode: Literal["fanout", "queue", "outbox"]
    stream_id: str | None = None
    group: str | None = None
    delivery_count: int = 1


_current: contextvars.ContextVar[Delivery | None] = contextvars.ContextVar(
    "asignals.delivery", default=None
)


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
    return _current.get()


@contextmanager
def delivering(delivery: Delivery) -> Iterator[None]:
    """Make *delivery* the current one for the sends made inside (a relay's, a consumer's)."""
    token = _current.set(delivery)
    try:
        yield
    finally:
        _current.reset(token)
