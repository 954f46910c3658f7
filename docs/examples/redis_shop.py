"""A shop that runs as several processes, its signals carried by Redis.

* ``prices_changed`` is fanned out: every web worker keeps its own price
  cache, and a price change made through one worker reaches every worker.
* ``order_placed`` is queued: a web worker only enqueues it (the request
  returns once Redis has it), and exactly one ``mailer`` process sends the
  receipt, even if a mailer dies halfway (another one retries after
  ``claim_after``).

Run it with a Redis server at ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``)::

    uvicorn --app-dir docs/examples redis_shop:app --workers 2 --port 8000
    python docs/examples/redis_shop.py mailer

    curl -X POST 127.0.0.1:8000/prices -H 'content-type: application/json' \\
         -d '{"item": "pizza", "price": "9.50"}'
    curl 127.0.0.1:8000/prices/pizza      # the same answer from either worker
    curl -X POST 127.0.0.1:8000/orders -H 'content-type: application/json' \\
         -d '{"item": "pizza"}'           # the mailer prints the receipt
"""

from __future__ import annotations

import decimal
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asignals import AsyncSignal, receiver
from asignals.redis import RedisBridge, current_delivery

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

prices_changed = AsyncSignal("prices_changed", doc="Payload: item, price.")
order_placed = AsyncSignal("order_placed", doc="Payload: order_id, item.")


IS_MAILER = __name__ == "__main__" and sys.argv[1:] == ["mailer"]

# One bridge per process, with the same registrations everywhere; only the
# mailer consumes orders (a process that names no group only produces).
SECRET = os.environ.get("SHOP_SECRET")
bridge = RedisBridge(REDIS_URL, prefix="shop", secret=SECRET)
bridge.fanout(prices_changed)
if IS_MAILER:
    # A message left unacknowledged for 30 s is retried; after 5 deliveries
    # without success it moves to the dead letters.
    bridge.queue(order_placed, group="mailer", claim_after=30, max_deliveries=5)
else:
    bridge.queue(order_placed)


# -- the web workers ----------------------------------------------------------

prices: dict[str, decimal.Decimal] = {}


@receiver(prices_changed)
def update_cache(
    sender: Any, item: str, price: decimal.Decimal, **kwargs: Any
) -> None:
    # Runs in every worker: here on the local send, elsewhere from Redis.
    prices[item] = price


async def set_price(request: Request) -> JSONResponse:
    body = await request.json()
    price = decimal.Decimal(body["price"])
    await prices_changed.send("shop", item=body["item"], price=price)
    return JSONResponse({"ok": True, "worker": os.getpid()})


async def get_price(request: Request) -> JSONResponse:
    price = prices.get(request.path_params["item"])
    text = None if price is None else str(price)
    return JSONResponse({"price": text, "worker": os.getpid()})


async def place_order(request: Request) -> JSONResponse:
    item = (await request.json())["item"]
    order_id = int.from_bytes(os.urandom(4), "big")
    try:
        results = await order_placed.send("shop", order_id=order_id, item=item)
    except ConnectionError:  # Redis did not take it within send_timeout: say so
        return JSONResponse({"error": "try again shortly"}, status_code=503)
    ((_, stream_id),) = results  # the bridge's response: the stream entry id
    queued = {"order_id": order_id, "queued_as": stream_id}
    return JSONResponse(queued, status_code=202)


async def ready(request: Request) -> JSONResponse:
    body = {"redis": bridge.connected, "worker": os.getpid()}
    return JSONResponse(body, status_code=200 if bridge.connected else 503)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # Starts the bridge's listeners with the app, stops them at shutdown.
    async with bridge:
        yield


app = Starlette(
    routes=[
        Route("/prices", set_price, methods=["POST"]),
        Route("/prices/{item}", get_price),
        Route("/orders", place_order, methods=["POST"]),
        Route("/ready", ready),
    ],
    lifespan=lifespan,
)


# -- the mailer process -------------------------------------------------------


async def send_receipt(
    sender: Any, order_id: int, item: str, **kwargs: Any
) -> None:
    delivery = current_delivery()
    attempt = delivery.delivery_count if delivery is not None else 1
    # A real mailer would check `delivery.id` against the receipts it sent.
    receipt = f"receipt for order {order_id} ({item}), attempt {attempt}"
    print(receipt, flush=True)


async def run_mailer() -> None:
    order_placed.connect(send_receipt)
    async with bridge:
        print("mailer ready", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    if IS_MAILER:
        anyio.run(run_mailer)
    else:
        print(__doc__)
