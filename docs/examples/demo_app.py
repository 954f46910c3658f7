"""The asignals demo: a tiny FastAPI shop backed by SQLAlchemy, whose parts
talk through signals.

Run it with ``make demo`` and open http://127.0.0.1:8000, or::

    curl -X POST http://127.0.0.1:8000/orders \\
         -H 'content-type: application/json' \\
         -d '{"item": "pizza", "quantity": 2}'
    curl -X PATCH http://127.0.0.1:8000/orders/1 \\
         -H 'content-type: application/json' -d '{"quantity": 3}'
    curl -X POST 'http://127.0.0.1:8000/orders?dry_run=true' \\
         -H 'content-type: application/json' -d '{"item": "soup"}'
    curl -X DELETE http://127.0.0.1:8000/orders/1
    curl http://127.0.0.1:8000/stats

The orders live in an SQLite file (``demo-shop.db``); set ``DATABASE_URL`` to
use another database, e.g. ``postgresql+asyncpg://user@127.0.0.1/shop``.

* ``POST /orders`` stores an order. Its model signals do the rest: a
  ``pre_save`` receiver fills the slug (in the flush, so it is saved with the
  order); a durable ``post_save`` receiver with ``created`` sends the kitchen
  notification: its event is written to the outbox table in the order's own
  transaction, and the outbox's relay delivers it right after the commit (or,
  if the process dies first, when it starts again).
* ``POST /orders?dry_run=true`` saves the order (the flush runs, ``pre_save``
  fills the slug), then rolls the transaction back: the kitchen hears nothing.
* ``PATCH /orders/{id}`` changes the quantity: ``post_save`` arrives with
  ``created=False`` and ``changes``, which a receiver logs.
* ``DELETE /orders/{id}`` deletes one; a ``post_delete`` receiver logs it.
* A ``request_finished`` receiver logs the timing of every request.
* ``GET /stats`` shows the counters and the outbox's; ``GET /`` is a small page
  with a button.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy import String
from sqlalchemy.ext.asyncio import (
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from asignals import receiver, request_finished
from asignals.asgi import SignalMiddleware
from asignals.sqlalchemy import (
    Outbox,
    post_delete,
    post_save,
    pre_save,
    track,
    untrack,
)

log = logging.getLogger("demo")
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///demo-shop.db"

# -- the domain: orders, stored with SQLAlchemy ------------------------------


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "demo_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str] = mapped_column(String(50))
    quantity: Mapped[int] = mapped_column(default=1)
    slug: Mapped[str] = mapped_column(String(80), default="")


engine = create_async_engine(
    os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
)
# Its table is in the app's metadata: create_all (and Alembic) see it.
outbox = Outbox(engine, metadata=Base.metadata)

stats: Counter[str] = Counter()
kitchen_tickets: list[str] = []


# -- receivers: decoupled reactions to the model signals ---------------------


@receiver(pre_save, sender=Order)
def fill_slug(sender: type[Order], instance: Order, **kwargs: Any) -> None:
    """In the flush, before the INSERT or UPDATE: what is set here is saved."""
    text = f"{instance.quantity} {instance.item}".lower()
    instance.slug = re.sub(r"[^a-z0-9]+", "-", text)


@receiver(post_save, sender=Order, outbox=outbox)
async def notify_kitchen(
    sender: type[Order], instance: Order | None, created: bool, **kwargs: Any
) -> None:
    """Durable: run by the outbox's relay after the commit, at least once, even
    if the process dies right after the commit (no rollback sends)."""
    if not created or instance is None:  # None: deleted before delivery
        return
    await anyio.sleep(0.01)  # stands in for talking to the kitchen's printer
    what = f"{instance.quantity} x {instance.item} ({instance.slug})"
    ticket = f"order #{instance.id}: {what}"
    kitchen_tickets.append(ticket)
    stats["kitchen_notifications"] += 1
    log.info("kitchen: %s", ticket)


@receiver(post_save, sender=Order)
def log_change(
    sender: type[Order],
    instance: Order,
    created: bool,
    changes: dict[str, tuple[Any, Any]],
    **kwargs: Any,
) -> None:
    """After the commit of an update: what changed, from what to what."""
    if created:
        return
    stats["changed"] += 1
    what = ", ".join(
        f"{name} {old!r} -> {new!r}"
        for name, (old, new) in sorted(changes.items())
    )
    log.info("changed: order #%d: %s", instance.id, what)


@receiver(post_delete, sender=Order)
def log_cancellation(
    sender: type[Order], instance: Order, **kwargs: Any
) -> None:
    stats["cancelled"] += 1
    log.info("cancelled: order #%d (%s)", instance.id, instance.slug)


@receiver(request_finished)
def log_timing(
    sender: Any,
    scope: dict[str, Any],
    status_code: int | None,
    duration: float,
    **kwargs: Any,
) -> None:
    stats["requests"] += 1
    method, path, ms = scope["method"], scope["path"], duration * 1000
    log.info("%s %s -> %s in %.1f ms", method, path, status_code, ms)


# -- the web app --------------------------------------------------------------


class NewOrder(BaseModel):
    item: str = Field(min_length=1, max_length=50)
    quantity: int = Field(default=1, ge=1, le=100)


class OrderChange(BaseModel):
    quantity: int = Field(ge=1, le=100)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)  # and the outbox
    # expire_on_commit=False lets the endpoint read the order after the commit
    # (receivers can read it either way: post_save runs before the commit
    # expires anything).
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    track(sessions)  # these sessions send the model signals
    app.state.sessions = sessions
    try:
        async with outbox:  # the relay: delivers the durable receivers' events
            yield
    finally:
        untrack(sessions)
        await engine.dispose()


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as db:
        yield db


Db = Annotated[AsyncSession, Depends(session)]
api = FastAPI(title="asignals demo", lifespan=lifespan)


def as_dict(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "item": order.item,
        "quantity": order.quantity,
        "slug": order.slug,
    }


@api.post("/orders", status_code=201)
async def create_order(
    new: NewOrder, db: Db, dry_run: bool = False
) -> dict[str, Any]:
    if new.item.lower() == "anchovies":
        raise HTTPException(status_code=422, detail="we do not sell anchovies")
    order = Order(item=new.item, quantity=new.quantity)
    db.add(order)
    if dry_run:
        await db.flush()  # the INSERT runs, pre_save fills the slug...
        saved = as_dict(order)
        await (
            db.rollback()
        )  # ...and the rollback sends nothing: no kitchen ticket
        return {"order": saved, "rolled_back": True}
    # pre_save runs in the flush; the in-memory post_save receivers have run
    # when commit() returns, and the kitchen's event is in the outbox.
    await db.commit()
    return {"order": as_dict(order)}


@api.patch("/orders/{order_id}")
async def change_order(
    order_id: int, change: OrderChange, db: Db
) -> dict[str, Any]:
    order = await db.get(Order, order_id)
    if order is None:
        raise HTTPException(status_code=404, detail=f"no order #{order_id}")
    order.quantity = change.quantity
    await (
        db.commit()
    )  # post_save(created=False, changes={"quantity": ...}, ...) has run
    return {"order": as_dict(order)}


@api.delete("/orders/{order_id}", status_code=204)
async def delete_order(order_id: int, db: Db) -> None:
    order = await db.get(Order, order_id)
    if order is None:
        raise HTTPException(status_code=404, detail=f"no order #{order_id}")
    await db.delete(order)
    await db.commit()


@api.get("/stats")
async def get_stats() -> dict[str, Any]:
    box = await outbox.statistics()
    return {**stats, "outbox": {"pending": box.pending, "dead": box.dead}}


@api.get("/", response_class=HTMLResponse)
async def home() -> str:
    return """<!doctype html><title>asignals demo</title>
<h1>asignals demo shop</h1>
<p><button onclick="order()">Order a pizza</button></p>
<pre id="out">Press the button: the order is saved, the kitchen told.</pre>
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
