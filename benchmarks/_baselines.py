"""Baselines: what a user would write by hand instead of sending a signal.

* The strict floor calls the same receivers in order, inline in the caller (no extra
  coroutine), with the payload as literal keywords and every name a fast local,
  ``for r in rs: out.append((r, r(signal=s, sender=S, value=v)))``, collecting
  ``(receiver, response)`` tuples; it awaits coroutine receivers, and the robust variant
  wraps each call in ``try/except Exception``. It is the baseline of the sequential modes.
* The ``**payload`` hand loop is the same loop as most people write it,
  ``r(signal=s, sender=sender, **payload)``: a second, labelled reference.
* Raw task groups start one task per receiver: ``asyncio.TaskGroup`` or a trio nursery,
  and ``asyncio.gather``. A sync receiver needs a small coroutine around it to become a
  task; so does a robust call, to turn its exception into its response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ._model import ROBUST_MODES, Batch, LoopName, NotApplicable, Setup


def hand_loop(setup: Setup) -> Batch:
    receivers = setup.receivers
    signal, sender, payload = setup.signal, setup.sender, setup.payload
    sync = setup.case.kind == "sync"
    robust = setup.case.mode in ROBUST_MODES

    if sync and not robust:

        async def batch(k: int) -> None:
            for _ in range(k):
                responses = []
                for r in receivers:
                    responses.append((r, r(signal=signal, sender=sender, **payload)))

    elif sync:

        async def batch(k: int) -> None:
            for _ in range(k):
                responses = []
                for r in receivers:
                    try:
                        response = r(signal=signal, sender=sender, **payload)
                    except Exception as exc:
                        response = exc
                    responses.append((r, response))

    elif not robust:

        async def batch(k: int) -> None:
            for _ in range(k):
                responses = []
                for r in receivers:
                    responses.append((r, await r(signal=signal, sender=sender, **payload)))

    else:

        async def batch(k: int) -> None:
            for _ in range(k):
                responses = []
                for r in receivers:
                    try:
                        response = await r(signal=signal, sender=sender, **payload)
                    except Exception as exc:
                        response = exc
                    responses.append((r, response))

    return batch


def strict_floor(setup: Setup) -> Batch:
    """The strict floor: the hand loop with literal keywords and every name a fast local.

    ``for r in rs: out.append((r, r(signal=s, sender=S, value=v)))``: no keyword dict is
    built or unpacked per call, and the loop reads nothing from a closure or a global. It
    knows the payload's one name, as hand-written code at a call site does. No dispatcher
    can do less and still call every receiver and collect its response.
    """
    receivers = setup.receivers
    signal, sender = setup.signal, setup.sender
    (value,) = setup.payload.values()
    sync = setup.case.kind == "sync"
    robust = setup.case.mode in ROBUST_MODES

    if sync and not robust:

        async def batch(k: int) -> None:
            rs, s, S, v = receivers, signal, sender, value
            for _ in range(k):
                out = []
                for r in rs:
                    out.append((r, r(signal=s, sender=S, value=v)))

    elif sync:

        async def batch(k: int) -> None:
            rs, s, S, v = receivers, signal, sender, value
            for _ in range(k):
                out = []
                for r in rs:
                    try:
                        response = r(signal=s, sender=S, value=v)
                    except Exception as exc:
                        response = exc
                    out.append((r, response))

    elif not robust:

        async def batch(k: int) -> None:
            rs, s, S, v = receivers, signal, sender, value
            for _ in range(k):
                out = []
                for r in rs:
                    out.append((r, await r(signal=s, sender=S, value=v)))

    else:

        async def batch(k: int) -> None:
            rs, s, S, v = receivers, signal, sender, value
            for _ in range(k):
                out = []
                for r in rs:
                    try:
                        response = await r(signal=s, sender=S, value=v)
                    except Exception as exc:
                        response = exc
                    out.append((r, response))

    return batch


async def _call_sync(receiver: Callable[..., Any], **kwargs: Any) -> Any:
    return receiver(**kwargs)


async def _call_sync_robust(receiver: Callable[..., Any], **kwargs: Any) -> Any:
    try:
        return receiver(**kwargs)
    except Exception as exc:
        return exc


async def _await_robust(awaitable: Awaitable[Any]) -> Any:
    try:
        return await awaitable
    except Exception as exc:
        return exc


Maker = Callable[[Callable[..., Any]], Coroutine[Any, Any, Any]]


def _coroutine_maker(setup: Setup, robust: bool) -> Maker:
    """How a raw task group turns one receiver into the coroutine its task runs."""
    signal, sender, payload = setup.signal, setup.sender, setup.payload
    if setup.case.kind == "sync":
        wrapper = _call_sync_robust if robust else _call_sync

        def of_sync(r: Callable[..., Any]) -> Coroutine[Any, Any, Any]:
            return wrapper(r, signal=signal, sender=sender, **payload)

        return of_sync
    if robust:

        def of_robust(r: Callable[..., Any]) -> Coroutine[Any, Any, Any]:
            return _await_robust(r(signal=signal, sender=sender, **payload))

        return of_robust

    def of_coroutine(r: Callable[..., Any]) -> Coroutine[Any, Any, Any]:
        result: Coroutine[Any, Any, Any] = r(signal=signal, sender=sender, **payload)
        return result

    return of_coroutine


def raw_task_group(setup: Setup) -> Batch | NotApplicable:
    """``asyncio.TaskGroup`` on asyncio loops, a trio nursery on trio."""
    loop: LoopName = setup.case.loop
    if loop == "trio":
        from ._trio import nursery_baseline

        return nursery_baseline(setup, setup.case.mode in ROBUST_MODES)
    receivers = setup.receivers
    make = _coroutine_maker(setup, setup.case.mode in ROBUST_MODES)

    async def batch(k: int) -> None:
        for _ in range(k):
            async with asyncio.TaskGroup() as group:
                tasks = [(r, group.create_task(make(r))) for r in receivers]
            _responses = [(r, task.result()) for r, task in tasks]

    return batch


def raw_gather(setup: Setup) -> Batch | NotApplicable:
    """``asyncio.gather`` over one coroutine per receiver."""
    if setup.case.loop == "trio":
        return NotApplicable("asyncio.gather needs an asyncio event loop")
    receivers = setup.receivers
    # Robust is gather's own return_exceptions=True, not a wrapper per receiver.
    robust = setup.case.mode in ROBUST_MODES
    make = _coroutine_maker(setup, robust=False)

    async def batch(k: int) -> None:
        for _ in range(k):
            results = await asyncio.gather(*[make(r) for r in receivers], return_exceptions=robust)
            _responses = list(zip(receivers, results, strict=True))

    return batch
