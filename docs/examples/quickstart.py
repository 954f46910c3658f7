import asyncio
from typing import Any

from asignals import AsyncSignal, receiver

order_paid = AsyncSignal("order_paid", doc="An order was paid. Payload: order.")


class Shop:
    async def pay(self, order: int) -> list[tuple[Any, Any]]:
        # Charge the card here, then tell whoever is interested.
        return await order_paid.send(Shop, order=order)


@receiver(order_paid, sender=Shop)
async def send_receipt(sender: type[Shop], order: int, **kwargs: Any) -> str:
    await asyncio.sleep(0.1)  # stands in for a call to the mail service
    return f"receipt for order {order} sent"


@receiver(order_paid)
def count_sale(sender: Any, **kwargs: Any) -> str:
    return "counted"


async def main() -> None:
    results = await Shop().pay(order=42)
    for func, response in results:
        print(f"{func.__name__}: {response}")


asyncio.run(main())
