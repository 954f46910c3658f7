"""Everything that needs trio, imported only when trio is installed and asked for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from ._model import Batch, Setup


async def trio_suspending_receiver(*args: Any, **kwargs: Any) -> None:
    # What users write, as asyncio.sleep(0) is on asyncio (trio.sleep(0) is a checkpoint).
    await trio.sleep(0)  # noqa: ASYNC115


def nursery_baseline(setup: Setup, robust: bool) -> Batch:
    """A raw trio nursery: one task per receiver, responses in connection order."""
    receivers = setup.receivers
    signal, sender, payload = setup.signal, setup.sender, setup.payload
    is_sync = setup.case.kind == "sync"

    async def call(
        slots: list[Any], index: int, receiver: Callable[..., Any], kwargs: dict[str, Any]
    ) -> None:
        try:
            if is_sync:
                slots[index] = receiver(**kwargs)
            else:
                slots[index] = await receiver(**kwargs)
        except Exception as exc:
            if not robust:
                raise
            slots[index] = exc

    async def batch(k: int) -> None:
        for _ in range(k):
            slots: list[Any] = [None] * len(receivers)
            kwargs = {"signal": signal, "sender": sender, **payload}
            async with trio.open_nursery() as nursery:
                for index, receiver in enumerate(receivers):
                    nursery.start_soon(call, slots, index, receiver, kwargs)
            _responses = list(zip(receivers, slots, strict=True))

    return batch
