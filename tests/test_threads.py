"""Worker threads for to_thread receivers, and connecting from other threads."""

from __future__ import annotations

import gc
import threading
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from helpers import MODES, Mode, sender_of, sync_recorder

from asignals import AsyncSignal

pytestmark = pytest.mark.anyio


class Shop:
    pass


@pytest.mark.parametrize("mode", MODES)
async def test_to_thread_receiver_runs_in_a_worker_thread(mode: Mode) -> None:
    sig = AsyncSignal("s")
    loop_thread = threading.get_ident()
    threads: dict[str, int] = {}

    def blocking(**kwargs: Any) -> str:
        threads["blocking"] = threading.get_ident()
        return f"blocking {kwargs['order']} {kwargs['sender'].__name__}"

    def inline(**kwargs: Any) -> str:
        threads["inline"] = threading.get_ident()
        return "inline"

    async def coroutine(**kwargs: Any) -> str:
        threads["coroutine"] = threading.get_ident()
        return "coroutine"

    sig.connect(blocking, to_thread=True)
    sig.connect(inline)
    sig.connect(coroutine)

    responses = await sender_of(sig, mode)(Shop, order=7)

    assert [v for _, v in responses] == ["blocking 7 Shop", "inline", "coroutine"]
    assert threads["blocking"] != loop_thread
    assert threads["inline"] == loop_thread
    assert threads["coroutine"] == loop_thread


async def test_to_thread_receiver_exception_propagates() -> None:
    sig = AsyncSignal("s")
    error = ValueError("in thread")

    def blocking(**kwargs: Any) -> None:
        raise error

    sig.connect(blocking, to_thread=True)
    with pytest.raises(ValueError, match="in thread"):
        await sig.send()
    assert await sig.send_robust() == [(blocking, error)]


async def test_to_thread_receivers_run_concurrently_in_gather() -> None:
    sig = AsyncSignal("s")
    barrier = threading.Barrier(2, timeout=5)  # both threads must be running at once

    def blocking(**kwargs: Any) -> int:
        return barrier.wait()

    sig.connect(blocking, to_thread=True)
    sig.connect(blocking, sender=Shop, to_thread=True)
    with anyio.fail_after(10):
        responses = await sig.gather(Shop)
    assert sorted(v for _, v in responses) == [0, 1]


# -- connecting from other threads ----------------------------------------------------------


def stable_first(**kwargs: Any) -> str:
    return "first"


def stable_last(**kwargs: Any) -> str:
    return "last"


async def test_connect_and_disconnect_from_a_thread_while_sending() -> None:
    sig = AsyncSignal("s")
    sig.connect(stable_first)
    sig.connect(stable_last, sender=Shop)
    errors: list[BaseException] = []
    done = threading.Event()
    iterations = 1000

    def churn() -> None:
        try:
            for i in range(iterations):
                temporary = sync_recorder([], f"t{i}")
                sender = Shop if i % 3 else None
                sig.connect(temporary, sender, weak=i % 2 == 0)
                if i % 5 == 0:
                    sig.connect(temporary, sender, dispatch_uid=f"uid{i % 7}", weak=False)
                    sig.disconnect(sender=sender, dispatch_uid=f"uid{i % 7}")
                if i % 4:
                    assert sig.disconnect(temporary, sender)
                if i % 250 == 0:
                    gc.collect()
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=churn)
    sends = 0
    with anyio.fail_after(60):  # a deadlock detector: coverage tracing slows the churn a lot
        thread.start()
        while not done.is_set() or sends < 10:
            mode = ("send", "gather", "send_robust", "gather_robust")[sends % 4]
            responses = await getattr(sig, mode)(Shop)
            values = [v for _, v in responses]
            # The stable receivers always come first, whatever the churn after them.
            assert values[:2] == ["first", "last"]
            assert values[2:] == [None] * (len(values) - 2)
            sends += 1
            await anyio.lowlevel.checkpoint()
        await anyio.to_thread.run_sync(thread.join)

    assert errors == []
    assert sends >= 10
    # Whatever the thread left connected is still consistent with what sends call.
    leftover = sig.receivers_for(Shop)
    assert leftover[:2] == [stable_first, stable_last]
    assert [r for r, _ in await sig.send(Shop)] == leftover
    for r in leftover[2:]:
        sig.disconnect(r, Shop)
        sig.disconnect(r)
    gc.collect()
    assert sig.receivers_for(Shop) == [stable_first, stable_last]
    assert sig.receivers_for() == [stable_first]


def test_connect_from_many_threads_loses_no_connection() -> None:
    sig = AsyncSignal("s")
    per_thread = 300
    threads_count = 4
    made: list[list[Any]] = [[] for _ in range(threads_count)]
    start = threading.Barrier(threads_count, timeout=10)

    def connect_many(index: int) -> None:
        start.wait()
        for i in range(per_thread):
            func = sync_recorder([], f"{index}-{i}")
            made[index].append(func)
            sig.connect(func, sender=Shop if i % 2 else None, weak=False)

    threads = [threading.Thread(target=connect_many, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    connected = sig.receivers_for(Shop)
    assert len(connected) == per_thread * threads_count
    assert {id(f) for f in connected} == {id(f) for funcs in made for f in funcs}
    assert len(sig.receivers_for()) == per_thread * threads_count // 2
    for funcs in made:  # each thread's receivers keep that thread's connection order
        assert [f for f in connected if f in funcs] == funcs


def test_receivers_dying_in_another_thread_are_pruned() -> None:
    sig = AsyncSignal("s")
    holder = [sync_recorder([], str(i)) for i in range(50)]
    for func in holder:
        sig.connect(func)
    del func
    assert len(sig.receivers_for()) == 50

    def drop() -> None:
        holder.clear()
        gc.collect()

    thread = threading.Thread(target=drop)
    thread.start()
    thread.join(10)
    assert sig.receivers_for() == []  # (test_internals.py: and no connection is left)
