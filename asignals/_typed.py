"""Typed signals: a payload declared once, checked by mypy and pyright at every send and
every receiver.

The declaration is a prototype function; ``asignals.signal`` reads its name, docstring and
parameters, and returns a `TypedSignal` generic over the prototype's ``ParamSpec``. At run
time a typed signal is an `AsyncSignal` like any other; only the type checker sees the
difference.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar, overload

from typing_extensions import ParamSpec

from ._plans import Responses
from ._receivers import Receiver, describe
from ._signal import AsyncSignal, P

Q = ParamSpec("Q")
T = TypeVar("T")


class TypedSignal(AsyncSignal[P]):
    """An `AsyncSignal` whose payload a type checker knows; made by `asignals.signal`.

    Its send methods take the prototype's parameters, and `connect` (like `@receiver`)
    accepts only receivers that can be called with them.

    Example:
        ```python
        @asignals.signal
        def order_paid(sender: type[Shop], *, order: Order, **kwargs: Any) -> None:
            "Sent once an order is paid."


        await order_paid.send(Shop, order=order)  # checked
        ```
    """

    if TYPE_CHECKING:
        # At run time these are AsyncSignal's, whose sender is a positional-only parameter
        # (cheaper per send); type checkers see the prototype's payload instead.
        def send(  # narrower on purpose: the payload must fit P
            self, /, *args: P.args, **payload: P.kwargs
        ) -> Coroutine[Any, Any, Responses]: ...

        def send_robust(
            self, /, *args: P.args, **payload: P.kwargs
        ) -> Coroutine[Any, Any, Responses]: ...

    def connect(  # type: ignore[override]  # narrower on purpose: receivers must fit P
        self,
        receiver: Callable[P, T],
        sender: Any = None,
        *,
        weak: bool = True,
        dispatch_uid: Any = None,
        to_thread: bool = False,
        timeout: float | None = None,
        outbox: Any = None,
    ) -> Callable[P, T]:
        """`AsyncSignal.connect`, for receivers that accept the prototype's payload.

        Example:
            ```python
            async def mail(sender: type[Shop], order: Order, **kwargs: Any) -> None: ...


            order_paid.connect(mail)
            ```
        """
        return super().connect(
            receiver,
            sender,
            weak=weak,
            dispatch_uid=dispatch_uid,
            to_thread=to_thread,
            timeout=timeout,
            outbox=outbox,
        )


@overload
def signal(prototype: Callable[Q, Any], /) -> TypedSignal[Q]: ...


@overload
def signal(
    *, max_concurrency: int | None = None
) -> Callable[[Callable[Q, Any]], TypedSignal[Q]]: ...


def signal(
    prototype: Callable[..., Any] | None = None, /, *, max_concurrency: int | None = None
) -> TypedSignal[...] | Callable[[Callable[..., Any]], TypedSignal[...]]:
    """Declare a typed signal from a prototype function (never called).

    The prototype names the signal (``__name__``), documents it (its docstring) and types
    its payload: ``sender`` first (positional or keyword, never positional-only: a ``/``
    would make type checkers reject Django-style ``def r(sender, **kwargs)`` receivers),
    then the payload as keyword-only parameters, then ``**kwargs: Any`` (receivers are
    also given ``signal=...``). Use ``@signal(max_concurrency=4)`` to pass options.

    Raises:
        TypeError: *prototype* is not a function, or its parameters do not have that
            shape; the message says what to change.

    Example:
        ```python
        @asignals.signal
        def order_paid(sender: type[Shop], *, order: Order, **kwargs: Any) -> None:
            "Sent once an order is paid."


        @receiver(order_paid)
        async def mail(sender: type[Shop], order: Order, **kwargs: Any) -> None: ...
        ```
    """
    if prototype is None:
        return lambda prototype: _declare(prototype, max_concurrency)
    return _declare(prototype, max_concurrency)


def _declare(prototype: Callable[..., Any], max_concurrency: int | None) -> TypedSignal[...]:
    if not inspect.isfunction(prototype):
        raise TypeError(
            f"asignals.signal() declares a signal from a prototype function "
            f"(def name(sender, *, item: Type, **kwargs: Any) -> None), got {prototype!r}"
        )
    _check_prototype(prototype)
    return TypedSignal(
        prototype.__name__, max_concurrency=max_concurrency, doc=inspect.getdoc(prototype)
    )


def _check_prototype(prototype: Receiver) -> None:
    where = f"asignals.signal(): the prototype {describe(prototype)}"
    parameters = list(inspect.signature(prototype).parameters.values())
    kinds = inspect.Parameter
    if parameters and parameters[0].kind is kinds.POSITIONAL_ONLY:
        raise TypeError(
            f"{where} makes `{parameters[0].name}` positional-only; drop the `/`: receivers "
            f"get sender=... by keyword, and type checkers then reject Django-style receivers"
        )
    if not parameters or parameters[0].kind is not kinds.POSITIONAL_OR_KEYWORD:
        raise TypeError(
            f"{where} must take `sender` as its first parameter: "
            f"def {prototype.__name__}(sender, *, item: Type, **kwargs: Any) -> None"
        )
    if parameters[0].name != "sender":
        raise TypeError(
            f"{where} names its first parameter `{parameters[0].name}`; call it `sender` "
            f"(receivers are given sender=... by keyword)"
        )
    if parameters[-1].kind is not kinds.VAR_KEYWORD:
        raise TypeError(
            f"{where} must end with **kwargs: Any, since receivers are also given signal=..."
        )
    for parameter in parameters[1:-1]:
        if parameter.kind is not kinds.KEYWORD_ONLY:
            raise TypeError(
                f"{where}: the payload is keyword-only, so `{parameter.name}` must come "
                f"after a `*`: def {prototype.__name__}(sender, *, {parameter.name}, ...)"
            )
