"""Typing cases for typed signals, checked by mypy --strict and by pyright (make typecheck).

Never run, only checked. Every good line must pass both checkers; every bad line carries
an ignore comment for each checker, and both are configured to report ignores that are
not needed (mypy: warn_unused_ignores, part of --strict; pyright:
reportUnnecessaryTypeIgnoreComment), so a bad case that stops being an error fails CI.
"""

from __future__ import annotations

from typing import Any

import asignals
from asignals import AsyncSignal, receiver


class Shop: ...


class Order: ...


@asignals.signal
def order_paid(sender: type[Shop], *, order: Order, **kwargs: Any) -> None:
    """Sent once an order is paid."""


@asignals.signal(max_concurrency=4)
def order_shipped(sender: type[Shop], *, order: Order, carrier: str, **kwargs: Any) -> None:
    pass


untyped = AsyncSignal("untyped")
unnamed = AsyncSignal()


async def sends() -> None:
    await order_paid.send(Shop, order=Order())
    await order_paid.send_robust(Shop, order=Order())
    await order_paid.gather(Shop, order=Order())
    await order_paid.gather_robust(sender=Shop, order=Order())
    order_paid.send_sync(Shop, order=Order())
    order_paid.send_robust_sync(Shop, order=Order())
    await order_shipped.send(Shop, order=Order(), carrier="post")

    await order_paid.send(Shop, ordr=Order())  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await order_paid.send(Shop, order=1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await order_paid.send(Shop)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await order_paid.send(Order(), order=Order())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    order_paid.send_sync(Shop, order="x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await order_shipped.gather(Shop, order=Order())  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]

    # Untyped signals take anything, as before.
    await untyped.send(Shop, anything=1, goes="here")
    await untyped.send()
    unnamed.send_sync("shop.Order", x=1)


async def mail(sender: type[Shop], order: Order, **kwargs: Any) -> None: ...


def django_style(sender: Any, **kwargs: Any) -> None: ...


def wrong_item_type(sender: type[Shop], order: int, **kwargs: Any) -> None: ...


def no_kwargs(sender: type[Shop], order: Order) -> None: ...


def wrong_sender(sender: type[Order], **kwargs: Any) -> None: ...


def receivers() -> None:
    connected = order_paid.connect(mail)
    order_paid.connect(django_style)
    order_paid.connect(wrong_item_type)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    order_paid.connect(no_kwargs)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    order_paid.connect(wrong_sender)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    untyped.connect(wrong_item_type)
    untyped.connect(no_kwargs)  # untyped: checked at run time (**kwargs required)
    del connected


# connect() on an untyped signal returns the receiver's own type.
own: Any = untyped.connect(mail)


@receiver(order_paid)
async def on_paid(sender: type[Shop], order: Order, **kwargs: Any) -> None: ...


@receiver(order_paid, sender=Shop)
def on_paid_django(sender: Any, **kwargs: Any) -> None: ...


@receiver(order_paid)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
def on_paid_wrong(sender: type[Shop], order: str, **kwargs: Any) -> None: ...


@receiver([order_paid, untyped])
def on_several(sender: Any, **kwargs: Any) -> None: ...


@receiver(untyped)
async def on_untyped(sender: Any, whatever: int, **kwargs: Any) -> None: ...


def still_callable() -> None:
    on_untyped(Shop, whatever=1).close()
    on_several(Shop)
