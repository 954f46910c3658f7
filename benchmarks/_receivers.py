"""The receivers every implementation calls: module-level functions, copied per case.

Each kind has one template defined here at module level. A case with N receivers gets N
distinct copies of it (same code object, same globals: the same cost per call), because
every library deduplicates receivers by identity. The case's :class:`~._model.Setup` holds
the copies strongly, so libraries that hold receivers weakly (their default, and
asignals') see them alive for the whole case and dead after it.

The signature ``(*args, **kwargs)`` accepts every library's calling convention: Django and
asignals pass ``signal=, sender=, **payload``, blinker ``(sender, **payload)``, psygnal
positional arguments.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable
from typing import Any

from ._model import Kind, LoopName


def sync_receiver(*args: Any, **kwargs: Any) -> None:
    return None


async def async_receiver(*args: Any, **kwargs: Any) -> None:
    return None


async def asyncio_suspending_receiver(*args: Any, **kwargs: Any) -> None:
    await asyncio.sleep(0)


def template(kind: Kind, loop: LoopName) -> Callable[..., Any]:
    """The module-level function a case of *kind* on *loop* copies."""
    if kind == "sync":
        return sync_receiver
    if kind == "async":
        return async_receiver
    if loop == "trio":
        # Each loop suspends with its own zero-sleep; anyio.sleep(0) would add anyio's
        # dispatch to one side of every comparison.
        from ._trio import trio_suspending_receiver

        return trio_suspending_receiver
    return asyncio_suspending_receiver


def make_receivers(kind: Kind, loop: LoopName, n: int) -> list[Callable[..., Any]]:
    """*n* distinct receivers of *kind*, each a copy of the module-level template."""
    original = template(kind, loop)
    if not isinstance(original, types.FunctionType):  # pragma: no cover - templates are
        raise TypeError(f"receiver template {original!r} is not a function")
    copies: list[Callable[..., Any]] = []
    for index in range(n):
        copy = types.FunctionType(
            original.__code__,
            original.__globals__,
            f"{original.__name__}_{index}",
            original.__defaults__,
            original.__closure__,
        )
        copy.__qualname__ = copy.__name__
        copies.append(copy)
    return copies
