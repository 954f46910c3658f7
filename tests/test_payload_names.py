"""Payload names reach receivers unchanged, whatever they are called.

The dispatch loop is compiled per payload shape (asignals/_dispatch.py), with the payload
names spelled as literal keywords when possible, so names that could clash with that
generated code get their own tests here.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from helpers import MODES, ROBUST_MODES, Mode, sender_of

import asignals._dispatch
from asignals import AsyncSignal

pytestmark = pytest.mark.anyio


class Shop:
    pass


def payload_of(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k not in ("signal", "sender")}


def connect_all_kinds(sig: AsyncSignal, seen: list[dict[str, Any]]) -> list[Any]:
    """Connect one receiver of each calling convention; return them (keep them alive)."""

    def inline(**kwargs: Any) -> str:
        assert kwargs["signal"] is sig
        seen.append(payload_of(kwargs))
        return "inline"

    async def coroutine(**kwargs: Any) -> str:
        await anyio.lowlevel.checkpoint()
        seen.append(payload_of(kwargs))
        return "coroutine"

    async def with_timeout(**kwargs: Any) -> str:
        seen.append(payload_of(kwargs))
        return "timeout"

    def in_thread(**kwargs: Any) -> str:
        assert threading.current_thread() is not threading.main_thread()
        seen.append(payload_of(kwargs))
        return "thread"

    sig.connect(inline)
    sig.connect(coroutine, sender=Shop)
    sig.connect(with_timeout, timeout=5)
    sig.connect(in_thread, sender=Shop, to_thread=True)
    return [inline, coroutine, with_timeout, in_thread]


AWKWARD_NAMES = [
    # names the generated loop uses itself
    "plan",
    "robust",
    "receiver",
    "response",
    "responses",
    "ref",
    "call",
    "exc",
    "SYNC",
    "ASYNC",
    "log_failure",
    "dict",
    "payload",
    "run_in_order",
    # not spellable as a keyword argument
    "class",
    "None",
    "await",
    "not-an-identifier",
    "with space",
    "",
    "1st",
    # spellable but unusual
    "match",
    "_",
    "self",
    "__builtins__",
    "ñandú",
    "len",
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", AWKWARD_NAMES)
async def test_awkward_payload_name_is_passed_unchanged(name: str, mode: Mode) -> None:
    sig = AsyncSignal("s")
    seen: list[dict[str, Any]] = []
    keep = connect_all_kinds(sig, seen)
    value = object()
    responses = await sender_of(sig, mode)(Shop, **{name: value})
    assert [v for _, v in responses] == ["inline", "coroutine", "timeout", "thread"]
    assert seen == [{name: value}] * 4
    del keep


@pytest.mark.parametrize("mode", MODES)
async def test_many_payload_names_at_once(mode: Mode) -> None:
    sig = AsyncSignal("s")
    seen: list[dict[str, Any]] = []
    keep = connect_all_kinds(sig, seen)
    payload = {name: index for index, name in enumerate(AWKWARD_NAMES)}
    await sender_of(sig, mode)(Shop, **payload)
    await sender_of(sig, mode)(Shop, a=1, b=2)
    await sender_of(sig, mode)(Shop, b=2, a=1)  # another order, another shape
    await sender_of(sig, mode)(Shop)
    assert seen == [payload] * 4 + [{"a": 1, "b": 2}] * 8 + [{}] * 4
    del keep


SHAPES_SCRIPT = """
import anyio
import asignals._dispatch
from asignals import AsyncSignal

sig = AsyncSignal("s")
seen = []


def inline(**kwargs):
    seen.append(sorted(kwargs))


async def coroutine(**kwargs):
    seen.append(sorted(kwargs))


sig.connect(inline)
sig.connect(coroutine)


async def main():
    for index in range(400):  # more payload shapes than the dispatcher caches
        for mode in ("send", "send_robust", "gather", "gather_robust"):
            await getattr(sig, mode)(None, **{f"name{index}": index, "plan": 1})
            await getattr(sig, mode)(None, **{f"name{index}": index})


anyio.run(main)
expected = [
    names
    for index in range(400)
    for _mode in range(4)
    for names in [sorted(["signal", "sender", f"name{index}", "plan"])] * 2
    + [sorted(["signal", "sender", f"name{index}"])] * 2
]
assert seen == expected, (len(seen), seen[-3:])
print("ok")
"""


def test_more_payload_shapes_than_the_cache_holds() -> None:
    """Run in a fresh interpreter: the cache of compiled loops is process-wide."""
    result = subprocess.run(
        [sys.executable, "-c", SHAPES_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


async def test_cache_limit_in_process(
    monkeypatch: pytest.MonkeyPatch, anyio_backend_name: str
) -> None:
    """White-box twin of the test above: tiny caches, empty at first, restored afterwards.

    gather fills `loops` on trio, and the gather children's `child_loops` on asyncio."""
    dispatch = asignals._dispatch
    monkeypatch.setattr(dispatch, "loops", {})
    monkeypatch.setattr(dispatch, "child_loops", {})
    monkeypatch.setattr(dispatch, "_MAX_SHAPES", 2)
    sig = AsyncSignal("s")
    seen: list[dict[str, Any]] = []
    keep = connect_all_kinds(sig, seen)
    for index in range(5):
        for mode in MODES:
            await sender_of(sig, mode)(Shop, **{f"name{index}": index})
    assert seen == [{f"name{i}": i} for i in range(5) for _ in range(4 * 4)]
    del keep
    if anyio_backend_name == "trio":
        assert len(dispatch.loops) == 2
        assert dispatch.loop_for(("name0",)) is dispatch.loops[("name0",)]  # compiled once
    else:
        assert len(dispatch.child_loops) == 2
        child = dispatch.child_loop_for(("name0",), tuple)
        assert child is dispatch.child_loops[("name0",), tuple]  # compiled once
        beyond = dispatch.child_loop_for(("name4",), tuple)  # the ** child, shared
        assert beyond is dispatch.child_loop_for(("name5",), tuple) is not child


async def test_traceback_shows_the_dispatch_loop_source() -> None:
    import traceback

    sig = AsyncSignal("s")

    def failing(**kwargs: Any) -> None:
        raise ValueError("boom")

    sig.connect(failing)
    with pytest.raises(ValueError, match="boom") as info:
        await sig.send(order=1)
    text = "".join(traceback.format_exception(info.value))
    assert 'File "<asignals.send>", line ' in text
    assert "receiver(signal=signal, sender=sender, order=order)" in text


# -- names the compiler would change or that would shadow the loop's own --------------------


@pytest.mark.parametrize("mode", MODES)
async def test_payload_name_that_nfkc_normalises_is_passed_unchanged(mode: Mode) -> None:
    sig = AsyncSignal("s")
    seen: list[dict[str, Any]] = []
    keep = connect_all_kinds(sig, seen)
    payload = {"\ufb01le": 1}  # a dict: in source, the ligature would be normalised away
    await sender_of(sig, mode)(Shop, **payload)
    assert seen == [payload] * 4
    del keep


@pytest.mark.parametrize("mode", MODES)
async def test_payload_names_equal_after_nfkc_are_both_passed(mode: Mode) -> None:
    sig = AsyncSignal("s")
    seen: list[dict[str, Any]] = []
    keep = connect_all_kinds(sig, seen)
    payload = {"\ufb01le": 1, "file": 2}
    await sender_of(sig, mode)(Shop, **payload)
    assert seen == [payload] * 4
    del keep


@pytest.mark.parametrize("mode", MODES)
async def test_payload_named_exception_keeps_error_handling(mode: Mode) -> None:
    sig = AsyncSignal("s")
    error = ValueError("boom")

    def failing(**kwargs: Any) -> None:
        raise error

    sig.connect(failing)
    if mode in ROBUST_MODES:
        assert await sender_of(sig, mode)(Shop, Exception="x") == [(failing, error)]
    elif mode == "send":
        with pytest.raises(ValueError, match="boom"):
            await sig.send(Shop, Exception="x")
    else:
        with pytest.raises(ExceptionGroup) as info:
            await sig.gather(Shop, Exception="x")
        assert info.value.exceptions == (error,)
