"""The dispatch loop compiled per payload shape (asignals/_dispatch.py)."""

from __future__ import annotations

import logging
import traceback
from typing import Any

import pytest
from helpers import MODES, Mode, sender_of

from asignals import AsyncSignal
from asignals import _dispatch as dispatch

pytestmark = pytest.mark.anyio


def echo(**kwargs: Any) -> dict[str, Any]:
    return kwargs


async def async_echo(**kwargs: Any) -> dict[str, Any]:
    return kwargs


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


def test_spellable_shapes_get_their_own_loop_and_others_share_the_generic_one() -> None:
    spellable = dispatch.loop_for(("order", "user"))
    assert spellable is dispatch.loop_for(("order", "user"))
    assert spellable is not dispatch.loop_for(("user", "order"))
    generic = dispatch.loop_for(("class",))
    assert generic is dispatch.loop_for(("plan",))
    assert generic is dispatch.loop_for(("a b",))
    assert generic is not spellable


def test_shape_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "loops", {})
    monkeypatch.setattr(dispatch, "_MAX_SHAPES", 3)
    for index in range(10):
        dispatch.loop_for((f"name{index}",))
    assert len(dispatch.loops) == 3
    assert dispatch.loop_for(("name9",)) is dispatch.loop_for(("**",))  # the generic loop


async def test_payload_shape_cache_overflow_still_delivers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "loops", {})
    monkeypatch.setattr(dispatch, "_MAX_SHAPES", 1)
    sig = AsyncSignal("overflow")
    sig.connect(echo)
    assert await sig.send(None, a=1) == [(echo, {"signal": sig, "sender": None, "a": 1})]
    assert await sig.send(None, b=2) == [(echo, {"signal": sig, "sender": None, "b": 2})]


async def test_tracebacks_through_the_loop_show_its_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sig = AsyncSignal("tb")

    def fails(**kwargs: Any) -> None:
        raise ValueError("boom")

    sig.connect(fails)
    with pytest.raises(ValueError, match="boom") as info:
        await sig.send(None, order=1)
    text = "".join(traceback.format_exception(info.value))
    assert "asignals dispatch loop (order)" in text
    assert "receiver(signal=signal, sender=sender, order=order)" in text
    with caplog.at_level(logging.ERROR, logger="asignals"):
        await sig.send_robust(None, order=1)
    assert "response = receiver(signal=signal, sender=sender, order=order)" in caplog.text
