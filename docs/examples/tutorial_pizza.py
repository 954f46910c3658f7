import asyncio
import logging
from typing import Any

from asignals import AsyncSignal, receiver

logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")

pizza_done = AsyncSignal("pizza_done", doc="Payload: toppings, size.")

# What every send returns: one (receiver, response) pair per receiver called.
Results = list[tuple[Any, Any]]


class PizzaStore:
    async def send_pizza(self, toppings: list[str], size: str) -> Results:
        return await pizza_done.send(PizzaStore, toppings=toppings, size=size)


@receiver(pizza_done, sender=PizzaStore)
def print_ticket(
    sender: type[PizzaStore], toppings: list[str], size: str, **kwargs: Any
) -> str:
    return f"{size} pizza: {', '.join(toppings)}"


@receiver(pizza_done)
async def call_courier(sender: Any, size: str, **kwargs: Any) -> str:
    await asyncio.sleep(0.01)  # stands in for the courier service's API
    if size == "family":
        raise RuntimeError("no courier has a bag that big")
    return "courier on the way"


def show(results: Results) -> None:
    print([(func.__name__, response) for func, response in results])


async def main() -> None:
    store = PizzaStore()
    show(await store.send_pizza(["mushrooms", "olives"], "large"))

    family = {"toppings": ["ham"], "size": "family"}
    try:
        await pizza_done.send(PizzaStore, **family)
    except RuntimeError as exc:
        print("send() raised:", exc)

    show(await pizza_done.send_robust(PizzaStore, **family))
    show(await pizza_done.gather(PizzaStore, toppings=["basil"], size="small"))


asyncio.run(main())
