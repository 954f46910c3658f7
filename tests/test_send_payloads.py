"""Any payload reaches the receivers unchanged: whatever its names, however many.

Names a Python keyword cannot spell, names the dispatcher might use itself, names the
compiler would normalise, thousands of names, hundreds of distinct shapes: every receiver
kind, in every send mode, gets exactly the payload that was sent.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from helpers import MODES, ROBUST_MODES, Mode, connect_every_kind, sender_of

from asignals import AsyncSignal

pytestmark = pytest.mark.anyio


class Shop:
    pass


def echo(**kwargs: Any) -> dict[str, Any]:
    return kwargs


async def async_echo(**kwargs: Any) -> dict[str, Any]:
    return kwargs


def connect_all_kinds(sig: AsyncSignal, seen: list[dict[str, Any]]) -> list[Any]:
    """One receiver of each calling convention (keep them alive); see helpers.py."""
    return connect_every_kind(sig, seen, Shop)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({}, id="empty"),
        pytest.param({"order": 1, "user": "ann"}, id="spellable"),
        pytest.param({"class": 1, "from": 2}, id="python-keywords"),
        pytest.param({"plan": 1, "receiver": 2, "payload": 3}, id="loop-names"),
        pytest.param({"not an identifier": 1, "x-y": 2}, id="not-identifiers"),
        pytest.param({"order": 1, "class": 2}, id="mixed"),
    ],
)
async def test_every_payload_shape_reaches_receivers_unchanged(
    mode: Mode, payload: dict[str, Any]
) -> None:
    sig = AsyncSignal("shapes")
    sig.connect(echo)
    sig.connect(async_echo)
    responses = await sender_of(sig, mode)("S", **payload)
    expected = {"signal": sig, "sender": "S", **payload}
    assert responses == [(echo, expected), (async_echo, expected)]


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
    "refit",
    "KeyError",
    "children",
    "part_index",
    "_key0",
    "_key2",
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
@pytest.mark.parametrize("name", AWKWARD_NAMES)
async def test_awkward_name_between_ordinary_ones_of_the_same_length(name: str, mode: Mode) -> None:
    """A signal reuses its last send's loop for a payload of the same length (the loop
    checks the names): an awkward name before, between or after ordinary ones changes
    nothing, and neither do three names where the awkward one is last."""
    sig = AsyncSignal("s")
    seen: list[dict[str, Any]] = []
    keep = connect_all_kinds(sig, seen)
    send = sender_of(sig, mode)
    payloads = [{name: 1}, {"other": 2}, {name: 3}, {"a": 4, "b": 5, name: 6}, {"a": 7, "b": 8}]
    for payload in payloads:
        responses = await send(Shop, **payload)
        assert [v for _, v in responses] == ["inline", "coroutine", "timeout", "thread"]
    assert seen == [payload for payload in payloads for _ in range(4)]
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


@pytest.mark.parametrize("mode", MODES)
async def test_payloads_of_every_size_up_to_forty_names_are_delivered(mode: Mode) -> None:
    sig = AsyncSignal("sizes")
    sig.connect(echo)
    sig.connect(async_echo)
    for size in range(41):
        payload = {f"size_{size}_{index}": index for index in range(size)}
        expected = {"signal": sig, "sender": None, **payload}
        responses = await sender_of(sig, mode)(None, **payload)
        assert responses == [(echo, expected), (async_echo, expected)]


@pytest.mark.parametrize("mode", MODES)
async def test_ten_thousand_payload_names_are_delivered(mode: Mode) -> None:
    sig = AsyncSignal("form")
    sig.connect(echo)
    form = {f"field_{index}": index for index in range(10_000)}
    [(_, received)] = await sender_of(sig, mode)(None, **form)
    assert received == {"signal": sig, "sender": None, **form}


@pytest.mark.parametrize("mode", MODES)
async def test_payload_named_debug_is_delivered(mode: Mode) -> None:
    sig = AsyncSignal("debug")
    sig.connect(echo)
    payload = {"__debug__": "yes", "order": 1}
    for _ in range(2):  # and the second time too (it used to recompile and fail again)
        [(_, received)] = await sender_of(sig, mode)(None, **payload)
        assert received == {"signal": sig, "sender": None, **payload}


SHAPES_SCRIPT = """
import anyio
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


def test_hundreds_of_distinct_payload_shapes_are_all_delivered() -> None:
    """More shapes than any cache of the dispatcher holds. Run in a fresh interpreter:
    those caches are process-wide."""
    result = subprocess.run(
        [sys.executable, "-c", SHAPES_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# -- names the compiler would change, or that would shadow the dispatcher's own -------------


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
