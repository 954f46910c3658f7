"""What a failing receiver's traceback shows: the line that called the receiver, inside one
short frame of asignals' own, in every send mode; and the same line in a robust send's log."""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any, cast

import anyio.to_thread
import pytest
from helpers import MODES, Mode, sender_of

from asignals import AsyncSignal


@pytest.mark.anyio
async def test_tracebacks_and_logged_failures_show_the_line_that_called_the_receiver(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sig = AsyncSignal("tb")

    def fails(**kwargs: Any) -> None:
        raise ValueError("boom")

    sig.connect(fails)
    with pytest.raises(ValueError, match="boom") as info:
        await sig.send(None, order=1)
    text = "".join(traceback.format_exception(info.value))
    assert 'File "<asignals.send>", line ' in text
    assert "receiver(signal=signal, sender=sender, order=order)" in text
    with caplog.at_level(logging.ERROR, logger="asignals"):
        await sig.send_robust(None, order=1)
    assert "response = receiver(signal=signal, sender=sender, order=order)" in caplog.text


@pytest.mark.anyio
async def test_a_failed_send_shows_the_line_that_called_the_receiver() -> None:
    sig = AsyncSignal("s")

    def failing(**kwargs: Any) -> None:
        raise ValueError("boom")

    sig.connect(failing)
    with pytest.raises(ValueError, match="boom") as info:
        await sig.send(order=1)
    text = "".join(traceback.format_exception(info.value))
    assert 'File "<asignals.send>", line ' in text
    assert "receiver(signal=signal, sender=sender, order=order)" in text


@pytest.mark.asyncio
async def test_a_failed_gather_on_asyncio_shows_the_line_that_awaited_the_receiver() -> None:
    """On asyncio each receiver runs in a task of its own: its frame is "asignals.gather"."""
    sig = AsyncSignal("tb")

    async def fails(**kwargs: Any) -> None:
        raise ValueError("boom")

    sig.connect(fails)
    with pytest.raises(ExceptionGroup) as info:
        await sig.gather(None, order=1)
    (error,) = info.value.exceptions
    text = "".join(traceback.format_exception(error))
    assert 'File "<asignals.gather>", line ' in text
    assert "await receiver(signal=signal, sender=sender, order=order)" in text


class Refused(Exception):
    pass


def refuse(**kwargs: Any) -> None:
    raise Refused("no stock")


async def async_refuse(**kwargs: Any) -> None:
    raise Refused("no stock")


GENERATED_FRAME = re.compile(r'  File "<(asignals\.(?:send|gather))>", line \d+, in \1')


@pytest.mark.anyio
@pytest.mark.parametrize("mode", [*MODES, "send_sync"])
@pytest.mark.parametrize("receiver", [refuse, async_refuse], ids=["sync", "coroutine"])
async def test_a_failing_receivers_traceback_shows_one_short_asignals_frame(
    mode: str, receiver: Any, anyio_backend_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """What a user reads between their code and the receiver: one frame of asignals' own,
    on one short line that says so, then the line that called the receiver."""
    order_paid = AsyncSignal("order_paid")
    order_paid.connect(receiver)
    with caplog.at_level(logging.ERROR, logger="asignals"):  # (the robust modes log it)
        try:
            if mode == "send_sync":  # from a worker thread: run on this loop
                await anyio.to_thread.run_sync(lambda: order_paid.send_sync(None, toppings=2))
            else:
                responses = await sender_of(order_paid, cast(Mode, mode))(None, toppings=2)
                raise responses[0][1]  # what the robust modes return instead
        except* Refused as group:
            (error,) = group.exceptions
    lines = "".join(traceback.format_exception(error)).splitlines()
    generated = [index for index, line in enumerate(lines) if "<asignals." in line]
    assert len(generated) == 1, "\n".join(lines)
    header, source = lines[generated[0]], lines[generated[0] + 1]
    match = GENERATED_FRAME.fullmatch(header)
    assert match is not None, header
    on_asyncio_tasks = mode.startswith("gather") and anyio_backend_name == "asyncio"
    assert match.group(1) == ("asignals.gather" if on_asyncio_tasks else "asignals.send")
    assert len(header) < 60
    # The receiver's call, as the loop this send took spells it: with the payload's names
    # (`toppings=toppings`), or `**payload` once earlier tests filled the bounded cache.
    assert "receiver(signal=signal, sender=sender, " in source, source
    after = [line for line in lines[generated[0] + 1 :] if line.startswith("  File ")]
    assert after[0].endswith(f", in {receiver.__name__}")  # the receiver's own frame, next
    assert lines[-1] == f"{__name__}.Refused: no stock"
