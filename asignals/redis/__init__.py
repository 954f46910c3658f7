"""Signals across processes and hosts, over Redis: fanout (pub/sub) and queues (Streams).

```python
from asignals.redis import RedisBridge

bridge = RedisBridge("redis://127.0.0.1:6379/0", prefix="shop")
bridge.fanout(cache_invalidated)  # every process hears it
bridge.queue(order_created, group="mailer")  # one mailer handles each

async with bridge:
    # The local receivers run, then every other process's:
    await cache_invalidated.send("products")
    # Returns once Redis has the message (XADD):
    await order_created.send("shop", order_id=42)
```

How a send reaches Redis: the bridge installs a send hook on each signal it carries (see
``asignals/_hooks.py``). For a fanout signal the hook puts one entry in front of the
send's plan, which publishes the message; for a queued signal it replaces the plan with
that one entry, which appends the message to the signal's stream. The message is encoded
inside the hook, when ``send()`` is called, so a payload JSON cannot carry raises
``TypeError`` before anything is published. A message coming from Redis is re-sent locally
with ``send_robust`` while a context variable tells the hook to leave that one send alone,
so it is never published again.

The bridge needs redis-py's asyncio client (the ``redis`` extra) and an asyncio event loop
(uvloop included); trio is not supported by redis-py.
"""

from .._delivery import Delivery as Delivery
from .._delivery import current_delivery as current_delivery
from ._bridge import RedisBridge as RedisBridge
from ._health import bridge_connected as bridge_connected
from ._health import bridge_disconnected as bridge_disconnected
from ._types import BridgeConnectionError as BridgeConnectionError
from ._types import BridgeStatistics as BridgeStatistics
from ._types import DeadLetter as DeadLetter

__all__ = [
    "BridgeConnectionError",
    "BridgeStatistics",
    "DeadLetter",
    "Delivery",
    "RedisBridge",
    "bridge_connected",
    "bridge_disconnected",
    "current_delivery",
]

# Show users `asignals.redis.RedisBridge`, not the private module it is defined in.
for _name in (
    "BridgeConnectionError",
    "BridgeStatistics",
    "DeadLetter",
    "RedisBridge",
):
    globals()[_name].__module__ = __name__
del _name
