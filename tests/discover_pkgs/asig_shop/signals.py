"""Connects a receiver as a side effect of being imported, and counts its imports."""

from typing import Any

import asig_shop
from asignals import receiver

asig_shop.signals_imports += 1


@receiver(asig_shop.order_paid)
def on_order_paid(order: Any, **kwargs: Any) -> str:
    return f"receipt for {order}"
