import asyncio
from dataclasses import dataclass
from typing import Any

from asignals import AsyncSignal, receiver

order_created = AsyncSignal("order_created", doc="Payload: order.")


@dataclass
class Order:
    id: int
    email: str
    total: float


def show(label: str, results: list[tuple[Any, Any]]) -> None:
    print(label, [(func.__name__, response) for func, response in results])


class Shop:
    async def create_order(self, order: Order) -> None:
        # Store the order here, then tell whoever is interested.
        results = await order_created.send(Shop, order=order)
        show("Shop:", results)


class Marketplace:
    """Another part of the application that creates orders."""

    async def import_order(self, order: Order) -> None:
        results = await order_created.send(Marketplace, order=order)
        show("Marketplace:", results)


outbox: list[tuple[str, str]] = []
stats = {"orders": 0}


async def send_email(to: str, subject: str) -> None:
    # A real mailer awaits an SMTP server or an HTTP API here.
    await asyncio.sleep(0.01)
    outbox.append((to, subject))


@receiver(order_created, sender=Shop)
async def email_customer(
    sender: type[Shop], order: Order, **kwargs: Any
) -> str:
    await send_email(order.email, f"Order #{order.id} received")
    return "emailed"


def count_order(sender: Any, **kwargs: Any) -> int:
    stats["orders"] += 1
    return stats["orders"]


order_created.connect(count_order)


async def main() -> None:
    await Shop().create_order(Order(1, "ann@example.com", 30.0))
    await Marketplace().import_order(Order(2, "bob@example.com", 12.5))
    print(outbox)
    print(stats)


asyncio.run(main())
