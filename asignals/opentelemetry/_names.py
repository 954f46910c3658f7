"""How spans name things: an exception's type, a receiver."""

from __future__ import annotations

from typing import Any


def error_type(exc: BaseException) -> str:
    """The fully qualified class name of *exc* (``builtins.ValueError``), or of the first
    receiver's exception inside an exception group (a failed ``gather``)."""
    kind = type(first_error(exc))
    return f"{kind.__module__}.{kind.__qualname__}"


def first_error(exc: BaseException) -> BaseException:
    """The exception to record: a group's first receiver's exception."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = next((e for e in exc.exceptions if isinstance(e, Exception)), exc.exceptions[0])
    return exc


def function_name(receiver: Any) -> str:
    """``module.qualname`` of a receiver (its function, for a bound method or a partial)."""
    target = getattr(receiver, "__func__", receiver)
    while hasattr(target, "func"):  # functools.partial, nested
        target = target.func
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    module = getattr(target, "__module__", None) or type(target).__module__
    return f"{module}.{qualname}"
