"""gather's reading of anyio's private cancel-scope state (asignals/_task_state.py).

These fail loudly, naming what changed, when an anyio release stops keeping its cancel
scopes the way gather reads them; without them gather would only get quietly weaker.
"""

from __future__ import annotations

import asyncio

import anyio
import pytest

from asignals._task_state import cancel_pending, in_shielded_scope


@pytest.mark.asyncio
async def test_anyio_keeps_each_tasks_cancel_scopes_where_gather_reads_them() -> None:
    from anyio._backends import _asyncio as backend

    task = asyncio.current_task()
    assert task is not None
    assert hasattr(backend, "_task_states"), "anyio no longer has _task_states"
    with anyio.CancelScope(shield=True) as outer, anyio.CancelScope() as inner:  # noqa: ASYNC100
        state = backend._task_states.get(task)
        assert state is not None, "anyio keeps no state for a task inside a cancel scope"
        assert state.cancel_scope is inner, "the task's state no longer holds its scope"
        assert inner._parent_scope is outer, "a scope no longer knows the one around it"
        assert (outer.shield, inner.cancel_called) == (True, False)


@pytest.mark.asyncio
async def test_a_shielded_scope_is_seen_from_inside_only() -> None:
    task = asyncio.current_task()
    assert task is not None
    assert in_shielded_scope(task) is False
    with anyio.CancelScope(shield=True):  # noqa: ASYNC100
        assert in_shielded_scope(task) is True
        with anyio.CancelScope():  # noqa: ASYNC100
            assert in_shielded_scope(task) is True  # an unshielded scope inside a shield
    assert in_shielded_scope(task) is False


@pytest.mark.asyncio
async def test_a_pending_cancellation_is_seen_before_it_is_delivered() -> None:
    """What gather checks when eager children suspended: will the caller be cancelled?"""
    caller = asyncio.current_task()
    assert cancel_pending(None) is False
    assert cancel_pending(caller) is False
    assert caller is not None
    caller.cancel()
    assert cancel_pending(caller) is True
    with pytest.raises(asyncio.CancelledError):
        await asyncio.sleep(0)  # delivered here
    caller.uncancel()
    assert cancel_pending(caller) is False
    # Scopes without an await inside: the question is what gather would see there.
    with anyio.CancelScope() as scope:  # noqa: ASYNC100
        assert cancel_pending(caller) is False
        scope.cancel()
        assert cancel_pending(caller) is True
        with anyio.CancelScope(shield=True):  # noqa: ASYNC100
            assert cancel_pending(caller) is False
        with anyio.CancelScope():  # noqa: ASYNC100
            assert cancel_pending(caller) is True
    assert cancel_pending(caller) is False
