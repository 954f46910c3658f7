"""Helpers of the outbox tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

WAIT = 30  # seconds any one wait may take before the test fails


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Wait (bounded) until the coroutine *condition()* returns true."""
    with anyio.fail_after(WAIT):
        while True:
            if await condition():
                return
            await anyio.sleep(0.02)
