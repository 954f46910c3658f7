"""The dispatch loop, written once, as the code it runs.

`run_in_order` is how every send calls its receivers: it walks a plan, skips a receiver
whose weak reference died, calls or awaits the others according to their entry, and
collects ``(receiver, response)`` pairs. `run_part` is the same loop as the whole of one
child task of a gather on asyncio. Both are real functions, read by the linters and the
type checker, and correct as written: `asignals._loops` compiles specialised copies of
them (literal keywords for a payload's names, the one branch a plan of one kind needs,
``robust`` fixed), which must behave exactly like the originals, and the tests run both.

What is allowed here: only what every compiled copy may do. A name used here cannot be a
payload item's name in a copy (it would be shadowed), so `asignals._loops` reads the
names off this module's code.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._plans import Responses
from ._receivers import ASYNC, SYNC, Entry, Receiver, describe

if TYPE_CHECKING:
    from ._gather import Children

logger = logging.getLogger("asignals")


def log_failure(signal: Any, receiver: Receiver, exc: Exception) -> Exception:
    """Log and count a receiver's exception that a robust send returns instead of raising;
    return it.

    Logging never breaks delivery: a failure of the logging itself (a filter or handler
    that raises) is dropped.
    """
    signal._failures += 1  # for statistics(): what an application alerts on
    with contextlib.suppress(Exception):  # a failing filter or handler: nobody to tell
        logger.error(
            "Receiver %s of signal %r raised %s",
            describe(receiver),
            signal.label,
            type(exc).__name__,
            exc_info=exc,
        )
    return exc


async def run_in_order(
    signal: Any, plan: Iterable[Entry], sender: Any, payload: dict[str, Any], robust: bool = False
) -> Responses:
    """Call every live receiver of *plan* in order; collect (receiver, response) pairs.

    *plan* may be an iterator: what is left of it tells how far a loop got that was cut
    short. With *robust*, an `Exception` of a receiver becomes its response (logged);
    anything else always propagates.
    """
    responses: Responses = []
    for ref, call in plan:
        receiver = ref()
        if receiver is None:  # garbage-collected since the plan was built
            continue
        try:
            if call is SYNC:
                response = receiver(signal=signal, sender=sender, **payload)
            elif call is ASYNC:
                response = await receiver(signal=signal, sender=sender, **payload)
            else:  # to_thread and/or timeout
                response = await call(receiver, {"signal": signal, "sender": sender, **payload})  # type: ignore[operator]  # pyright: ignore[reportCallIssue]
        except Exception as exc:
            if not robust:
                raise
            # Appended here, not through `response`: no local but `responses` may hold it.
            responses.append((receiver, log_failure(signal, receiver, exc)))
            continue
        responses.append((receiver, response))
    try:
        return responses
    finally:
        # The traceback of a returned exception holds this frame: without this, the frame
        # would hold the exception (in `responses`), a cycle that keeps the payload alive
        # until the cycle collector runs. (No other local ever holds one.)
        del responses


async def run_part(
    signal: Any,
    plan: Iterable[Entry],
    sender: Any,
    payload: dict[str, Any],
    children: Children | None,
    part_index: int,
    robust: bool = False,
) -> None:
    """One part of a gather, in a task of its own: the loop over *plan*, which reports its
    responses or its failure to *children* instead of raising.

    Compiled copies inline the loop (one coroutine per part instead of two).
    """
    assert children is not None
    if not children.stopping:  # else cancelled before it started: run nothing
        try:
            responses = await run_in_order(signal, plan, sender, payload, robust)
            children.results[part_index] = responses
        except BaseException as exc:  # nothing may escape the task (see Children.failed)
            children.failed(exc)
    children.pending -= 1
    if not children.pending:
        children.finished()
    # As in run_in_order: the traceback of an exception returned or raised holds this
    # frame, which must then hold neither the exception nor `children` (which holds it).
    children = responses = None  # type: ignore[assignment]
