"""The asignals demo: a tiny FastAPI shop whose parts talk through signals.

Run it with ``make demo`` and open http://127.0.0.1:8000, or::

    curl -X POST http://127.0.0.1:8000/orders \\
         -H 'content-type: application/json' \\
         -d '{"item": "pizza", "quantity": 2}'
    curl http://127.0.0.1:8000/stats

* ``POST /orders`` creates an order and sends the custom ``order_created``
  signal.
* Two receivers react to it: one "e-mails" a notification (logged), one updates
  counters.
* A ``request_finished`` receiver logs the timing of every request.
* ``GET /stats`` shows the counters; ``GET /`` is a small page with a button.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from itertools import count
from typing import Any

import anyio
from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from asignals import AsyncSignal, receiver, request_finished
from asignals.asgi import SignalMiddleware

log = logging.getLogger("demo")

# -- the domain: orders, and a signal sent when one is created -----------------


@dataclass(frozen=True)
class Order:
    id: int
    item: str
    quantity: int


class Shop:
    """The sender of ``order_created``: receivers may filter on it."""


order_created = AsyncSignal(
    "order_created", doc="Sent with order=... after an order is saved."
)
stats: Counter[str] = Counter()
_order_ids = count(1)


# -- receivers: decoupled reactions to the signals -----------------------------


@receiver(order_created, sender=Shop)
async def send_confirmation(
    sender: type[Shop], order: Order, **kwargs: Any
) -> str:
    await anyio.sleep(0.01)  # stands in for talking to a mail server
    log.info(
        "notification: order #%d (%d x %s) confirmed",
        order.id,
        order.quantity,
        order.item,
    )
    stats["notifications_sent"] += 1
    return f"mailed confirmation for order #{order.id}"


@receiver(order_created)
def count_order(sender: Any, order: Order, **kwargs: Any) -> None:
    stats["orders"] += 1
    stats[f"items:{order.item}"] += order.quantity


@receiver(request_finished)
def log_timing(
    sender: Any,
    scope: dict[str, Any],
    status_code: int | None,
    duration: float,
    **kwargs: Any,
) -> None:
    stats["requests"] += 1
    log.info(
        "%s %s -> %s in %.1f ms",
        scope["method"],
        scope["path"],
        status_code,
        duration * 1e3,
    )


# -- the web app ---------------------------------------------------------------


class NewOrder(BaseModel):
    item: str = Field(min_length=1, max_length=50)
    quantity: int = Field(default=1, ge=1, le=100)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    yield


api = FastAPI(title="asignals demo", lifespan=lifespan)


@api.post("/orders", status_code=201)
async def create_order(new: NewOrder) -> dict[str, Any]:
    if new.item.lower() == "anchovies":
        raise HTTPException(status_code=422, detail="we do not sell anchovies")
    order = Order(id=next(_order_ids), item=new.item, quantity=new.quantity)
    responses = await order_created.send(Shop, order=order)
    return {
        "order": {
            "id": order.id,
            "item": order.item,
            "quantity": order.quantity,
        },
        "receivers": [
            f"{r.__name__}: {response!r}" for r, response in responses
        ],
    }


@api.get("/stats")
async def get_stats() -> dict[str, int]:
    return dict(stats)


@api.get("/", response_class=HTMLResponse)
async def home() -> str:
    return """<!doctype html><title>asignals demo</title>
<h1>asignals demo shop</h1>
<p><button onclick="order()">Order a pizza</button></p>
<pre id="out">Press the button: order_created is sent, its receivers run.</pre>
<script>
async function order() {
  const r = await fetch('/orders', {
    method: 'POST',
    headers: {'content-type': 'application/json'},
    body: JSON.stringify({item: 'pizza', quantity: 1}),
  });
  const created = await r.json();
  const stats = await (await fetch('/stats')).json();
  const out = document.getElementById('out');
  out.textContent = JSON.stringify({created, stats}, null, 2);
}
</script>"""


# Outermost, so that request_finished sees the status the client really gets.
app = SignalMiddleware(api)
