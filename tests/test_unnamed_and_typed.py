"""Unnamed signals, the forgotten-await warning, and asignals.signal at run time."""

from __future__ import annotations

import functools
import inspect
import logging
import warnings
from typing import Any

import pytest
from helpers import MODES, Mode, sender_of, values

import asignals
from asignals import AsyncSignal, TypedSignal, receiver

module_signal = AsyncSignal()


class Shop:
    pass


def test_an_unnamed_signal_is_shown_by_its_variable() -> None:
    assert module_signal.name is None
    assert module_signal.label == f"{__name__}.module_signal"
    assert repr(module_signal) == f"<AsyncSignal {__name__}.module_signal>"


def test_an_unnamed_local_signal_is_shown_by_where_it_was_made() -> None:
    line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
    local = AsyncSignal()
    assert local.label == f"{__name__}:{line}"
    assert f"{__name__}:{line}" in repr(local)


def test_a_subclass_reports_where_it_was_made_not_its_constructor() -> None:
    class Mine(AsyncSignal):
        def __init__(self) -> None:
            super().__init__(max_concurrency=2)

    line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
    mine = Mine()
    assert mine.label == f"{__name__}:{line}"


def test_errors_and_logs_name_an_unnamed_signal(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(TypeError, match=f"{__name__}.module_signal"):
        module_signal.connect(42)  # type: ignore[type-var]

    def fails(**kwargs: Any) -> None:
        raise ValueError("boom")

    module_signal.connect(fails)
    try:
        with caplog.at_level(logging.ERROR, logger="asignals"):
            module_signal.send_robust_sync(Shop)
    finally:
        module_signal.disconnect(fails)
    assert f"{__name__}.module_signal" in caplog.text


@pytest.mark.parametrize("bad", ["", 5, b"x"])
def test_a_bad_name_is_refused(bad: Any) -> None:
    with pytest.raises(TypeError, match="name must be a non-empty string or left out"):
        AsyncSignal(bad)


@pytest.mark.anyio
@pytest.mark.parametrize("connected", [False, True])
@pytest.mark.parametrize("mode", MODES)
async def test_a_forgotten_await_names_the_signal_and_method(mode: Mode, connected: bool) -> None:
    order_paid = AsyncSignal("order_paid")

    async def receive(**kwargs: Any) -> None:
        pass

    if connected:
        order_paid.connect(receive)
    with pytest.warns(RuntimeWarning, match=rf"coroutine 'order_paid\.{mode}' was never awaited"):
        sender_of(order_paid, mode)(Shop)  # type: ignore[unused-coroutine]  # the mistake


@pytest.mark.anyio
async def test_a_forgotten_await_of_an_unnamed_signal() -> None:
    with pytest.warns(RuntimeWarning, match=rf"'{__name__}\.module_signal\.send' was never"):
        module_signal.send(Shop)  # type: ignore[unused-coroutine]  # the mistake


# -- asignals.signal -------------------------------------------------------------------------


@asignals.signal
def order_paid(sender: type[Shop], *, order: int, **kwargs: Any) -> None:
    """Sent once an order is paid."""


@asignals.signal(max_concurrency=3)
def order_shipped(sender: Any, **kwargs: Any) -> None:
    pass


def test_a_typed_signal_is_named_and_documented_by_its_prototype() -> None:
    assert isinstance(order_paid, TypedSignal)
    assert isinstance(order_paid, AsyncSignal)
    assert order_paid.name == "order_paid"
    assert order_paid.__doc__ == "Sent once an order is paid."
    assert repr(order_paid) == "<AsyncSignal 'order_paid'>"
    assert order_shipped.max_concurrency == 3
    assert order_shipped.__doc__ is None


@pytest.mark.anyio
async def test_a_typed_signal_sends_as_any_signal() -> None:
    @receiver(order_paid, sender=Shop)
    async def mail(sender: type[Shop], order: int, **kwargs: Any) -> int:
        return order + 1

    def django_style(sender: Any, **kwargs: Any) -> str:
        return "dj"

    order_paid.connect(django_style)
    try:
        assert values(await order_paid.send(Shop, order=1)) == [2, "dj"]
        assert values(await order_paid.gather_robust(Shop, order=2)) == [3, "dj"]
    finally:
        order_paid.disconnect(mail, Shop)
        order_paid.disconnect(django_style)


def _sender_first(sender: Any, **kwargs: Any) -> None: ...


@pytest.mark.parametrize(
    ("prototype", "match"),
    [
        pytest.param(Shop, "prototype function", id="a-class"),
        pytest.param(42, "prototype function", id="a-number"),
        pytest.param(functools.partial(_sender_first), "prototype function", id="a-partial"),
        pytest.param(lambda sender, /, **kw: None, "positional-only", id="positional-only"),
        pytest.param(lambda **kw: None, "`sender` as its first", id="no-sender"),
        pytest.param(lambda *, sender, **kw: None, "`sender` as its first", id="kw-sender"),
        pytest.param(lambda shop, **kw: None, "call it `sender`", id="misnamed"),
        pytest.param(lambda sender, *, order: None, "must end with \\*\\*kwargs", id="no-kwargs"),
        pytest.param(lambda sender, order, **kw: None, "after a `\\*`", id="positional-item"),
        pytest.param(lambda sender, *items, **kw: None, "after a `\\*`", id="var-positional"),
    ],
)
def test_bad_prototypes_are_refused(prototype: Any, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        asignals.signal(prototype)


def test_the_decorator_form_checks_too() -> None:
    with pytest.raises(TypeError, match="prototype function"):
        asignals.signal(max_concurrency=2)(Shop)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert asignals.signal(max_concurrency=None)(_sender_first).name == "_sender_first"
