"""What gather reads of asyncio's and anyio's private task state, all of it, in one place.

On asyncio, ``gather`` runs its receivers in plain tasks and cancels them the way anyio's
own task groups do, so it asks two questions anyio answers only from private state:

* is the calling task about to be cancelled (a ``Task.cancel()`` not delivered yet, or an
  enclosing anyio cancel scope already cancelled, not behind a shield)?
* is a child task inside a shielded anyio cancel scope right now?

anyio's asyncio backend keeps each task's innermost cancel scope in ``_task_states`` (a
task -> state table whose states have ``cancel_scope``), and each scope its enclosing one
in ``_parent_scope``; asyncio keeps a requested cancellation in ``Task._must_cancel``.
``pyproject.toml`` bounds anyio below its next major version for this reason, and
``tests/test_task_state.py`` fails loudly when an anyio release stops keeping them so.

Should that happen in a release the tests have not seen, both answers fall back to
"no" (gather then cancels as asyncio would, without anyio's shielding) and the
``asignals`` logger says so once, instead of silently.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger("asignals")

_warned = False


def _scopes(task: asyncio.Task[Any]) -> Iterator[Any]:
    """The anyio cancel scopes around *task*, innermost first (none without anyio)."""
    backend = sys.modules.get("anyio._backends._asyncio")
    if backend is None:  # anyio's asyncio backend never ran: no anyio scope anywhere
        return
    state = backend._task_states.get(task)
    scope = None if state is None else state.cancel_scope
    while scope is not None:
        yield scope
        scope = scope._parent_scope


def cancel_pending(task: asyncio.Task[Any] | None) -> bool:
    """Whether *task* is cancelled at its next ``await``: a ``Task.cancel()`` not delivered
    yet, or an anyio cancel scope around it cancelled already (not behind a shield).

    Half the cost of anyio's public ``current_effective_deadline()``, which tells the same.
    """
    if task is None:  # a coroutine driven by hand, outside any task
        return False
    if getattr(task, "_must_cancel", False):
        return True
    try:
        for scope in _scopes(task):
            if scope.cancel_called:
                return True
            if scope.shield:
                return False
    except AttributeError as exc:  # pragma: no cover - an anyio the tests have not seen
        _changed(exc)
    return False


def in_shielded_scope(task: asyncio.Task[Any]) -> bool:
    """Whether *task* is inside an anyio ``CancelScope(shield=True)`` right now."""
    try:
        return any(scope.shield for scope in _scopes(task))
    except AttributeError as exc:  # pragma: no cover - an anyio the tests have not seen
        _changed(exc)
    return False


def _changed(exc: AttributeError) -> None:  # pragma: no cover - see tests/test_task_state.py
    global _warned
    if not _warned:
        _warned = True
        logger.warning(
            "asignals: this anyio release keeps its cancel scopes differently (%s); gather "
            "on asyncio now cancels receivers without regard to anyio's shielded scopes. "
            "Install the anyio version pyproject.toml allows, or report it.",
            exc,
        )
