"""Receiver references: everything about a receiver that is decided at connect time.

A connected receiver becomes a ``Connection``. Its ``entry`` is the pair the dispatch
loop needs on every send, ``(ref, call)``:

* ``ref()`` returns the receiver, or ``None`` once a weakly referenced receiver has been
  garbage-collected. Strong references use the same zero-argument interface, so the loop
  never asks which kind it holds.
* ``call`` says how to call it: :data:`SYNC` (inline on the loop), :data:`ASYNC` (await the
  coroutine it returns) or an async wrapper that adds a worker thread and/or a timeout.

Nothing on this page runs on the hot path except ``ref()`` and the wrappers.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import weakref
from collections.abc import Awaitable, Callable, Hashable
from types import BuiltinFunctionType, FunctionType, MethodType
from typing import Any, Final

import anyio
import anyio.to_thread

Receiver = Callable[..., Any]
"""Anything a signal can call: ``receiver(signal=..., sender=..., **payload)``."""

Ref = Callable[[], Any]
"""A zero-argument callable returning the referent, or ``None`` once it is gone."""

Invoke = Callable[[Receiver, dict[str, Any]], Awaitable[Any]]

SYNC: Final = "sync"
"""Call inline on the event loop and use the return value."""

ASYNC: Final = "async"
"""Call, then await the coroutine it returns."""

Call = str | Invoke

Entry = tuple[Ref, Call]
"""A receiver as the dispatch loop sees it; a plan is a sequence of these."""


def strong_ref(obj: object) -> Ref:
    """Return a zero-argument callable that always returns *obj*.

    ``itertools.repeat(obj).__next__`` is implemented in C, so calling it costs the same as
    calling a ``weakref.ref``: strong and weak receivers go through one path in the loop.
    """
    return itertools.repeat(obj).__next__


def describe(obj: object) -> str:
    """A short, human name for a receiver or sender, for error messages and logs.

    Never raises: an object whose ``__qualname__``, ``__module__`` or ``__repr__`` raises
    is named by its type and id, so that an error message or a log record cannot itself
    fail (and, in a robust send, stop the receivers after it).
    """
    try:
        if isinstance(obj, functools.partial):
            return f"functools.partial({describe(obj.func)}, ...)"
        qualname = getattr(obj, "__qualname__", None)
        module = getattr(obj, "__module__", None)
        if isinstance(qualname, str):
            return f"{module}.{qualname}" if isinstance(module, str) else qualname
        return repr(obj)
    except Exception:
        return object.__repr__(obj)


def is_coroutine_callable(obj: object) -> bool:
    """Tell whether calling *obj* returns a coroutine that must be awaited.

    Covers coroutine functions, bound methods, ``functools.partial`` (nested), objects whose
    class defines ``async def __call__``, functions marked with
    ``inspect.markcoroutinefunction`` (Python 3.12+) and wrappers made with
    ``functools.wraps`` around a coroutine function (a plain ``def`` wrapper that returns
    the wrapped call's coroutine).
    """
    seen: set[int] = set()
    while id(obj) not in seen:
        seen.add(id(obj))
        if inspect.iscoroutinefunction(obj):
            return True
        if isinstance(obj, functools.partial):
            obj = obj.func
            continue
        if isinstance(obj, MethodType):
            obj = obj.__func__
            continue
        # A callable instance: its class's __call__ decides, before any __wrapped__ it
        # carries (asgiref's sync_to_async wraps a sync function in an async __call__).
        if (
            callable(obj)
            and not isinstance(obj, FunctionType | BuiltinFunctionType | type)
            and inspect.iscoroutinefunction(type(obj).__call__)
        ):
            return True
        wrapped = getattr(obj, "__wrapped__", None)
        if wrapped is None:
            return False
        obj = wrapped
    return False


def accepts_var_keyword(receiver: Receiver) -> bool:
    """Tell whether *receiver* takes ``**kwargs`` (True when its signature is unknowable)."""
    try:
        signature = inspect.signature(receiver)
    except (TypeError, ValueError):
        # Some builtins have no introspectable signature: give them the benefit of the doubt.
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())


# Senders of these exact types are matched by value, as blinker does: two equal strings
# built in different modules are one sender. They are immutable and cannot be weakly
# referenced, so identity would be an accident of interning. Subclasses (IntEnum and
# StrEnum members, say) keep identity semantics, like every other object.
_VALUE_TYPES: Final = frozenset({str, bytes, int, bool, float, complex})


def is_value_sender(sender: object) -> bool:
    """Whether *sender* is matched by value: a str, bytes or number, or a tuple of those."""
    if type(sender) is tuple:
        return all(is_value_sender(item) for item in sender)
    return type(sender) in _VALUE_TYPES


SenderKey = Hashable
"""How plans and connections file a sender: ``id(sender)``, or ``(type, value)`` for a
sender matched by value (a tuple never equals an int, so the two kinds cannot collide)."""


def sender_key(sender: object) -> SenderKey:
    """The key of *sender* (``None``, every sender, is never filed under a key)."""
    return _value_key(sender) if is_value_sender(sender) else id(sender)


def _value_key(value: object) -> SenderKey:
    # The type is part of the key, also inside tuples: True == 1, but they are two senders.
    if type(value) is tuple:
        return (tuple, tuple(_value_key(item) for item in value))
    return (type(value), value)


def same_sender(connected: object, sender: object) -> bool:
    """Whether a send from *sender* is a send from *connected* (value or identity)."""
    if connected is sender:
        return True
    return is_value_sender(connected) and sender_key(connected) == sender_key(sender)


def make_ref(obj: Any, weak: bool, on_death: Callable[[Any], None] | None) -> Ref:
    """Reference *obj* weakly (bound methods through ``WeakMethod``) or strongly.

    Raises TypeError when *weak* is asked of an object that cannot be weakly referenced.
    """
    if not weak:
        return strong_ref(obj)
    if isinstance(obj, MethodType):
        return weakref.WeakMethod(obj, on_death)
    return weakref.ref(obj, on_death)


def same_target(target: Any, receiver: Receiver | None) -> bool:
    """Identity test that treats two bound-method objects of one method as the same.

    The bound-method object is created anew on every attribute access, so its id is not
    stable; the function and the instance it binds are.
    """
    if target is receiver:
        return True
    return (
        isinstance(target, MethodType)
        and isinstance(receiver, MethodType)
        and target.__func__ is receiver.__func__
        and target.__self__ is receiver.__self__
    )


def make_call(is_async: bool, to_thread: bool, timeout: float | None) -> Call:
    """Choose once, at connect time, how the dispatch loop will call a receiver."""
    if to_thread:
        # With a timeout the thread cannot be interrupted: abandon it so the caller gets its
        # TimeoutError on time; the thread finishes in the background.
        abandon = timeout is not None

        async def in_thread(receiver: Receiver, kwargs: dict[str, Any]) -> Any:
            with anyio.move_on_after(math.inf if timeout is None else timeout):
                return await anyio.to_thread.run_sync(
                    functools.partial(receiver, **kwargs), abandon_on_cancel=abandon
                )
            raise timed_out(receiver, kwargs, timeout, "its thread was left to finish")

        return in_thread
    if not is_async:
        return SYNC
    if timeout is None:
        return ASYNC

    async def with_timeout(receiver: Receiver, kwargs: dict[str, Any]) -> Any:
        with anyio.move_on_after(timeout):
            return await receiver(**kwargs)
        raise timed_out(receiver, kwargs, timeout, "it was cancelled")

    return with_timeout


def timed_out(
    receiver: Receiver, kwargs: dict[str, Any], timeout: float | None, what: str
) -> TimeoutError:
    """The `TimeoutError` of a receiver that outlived its ``connect(timeout=...)``, naming
    the receiver, the signal and the limit (anyio's own has no message at all)."""
    signal = kwargs.get("signal")
    label = getattr(signal, "label", repr(signal))
    return TimeoutError(
        f"Receiver {describe(receiver)} of signal {label!r} did not finish within its "
        f"timeout of {timeout} seconds; {what}. Raise the timeout given to connect(), or "
        f"make the receiver faster"
    )


def lookup_key(receiver: Receiver | None, sender: Any, dispatch_uid: Hashable | None) -> Hashable:
    """The key connect() and disconnect() find a connection by, without scanning them all.

    Made of ids, which Python reuses once their objects are gone: a hit is confirmed with
    ``Connection.is_for`` and ``Connection.matches`` before it counts.
    """
    who: Hashable
    if dispatch_uid is not None:
        who = ("dispatch_uid", dispatch_uid)
    elif isinstance(receiver, MethodType):
        who = (id(receiver.__func__), id(receiver.__self__))  # see same_target()
    else:
        who = id(receiver)
    return (who, None if sender is None else sender_key(sender))


class Connection:
    """One ``connect()`` call: the receiver reference, its sender filter and how to call it."""

    __slots__ = (
        "__weakref__",
        "dispatch_uid",
        "entry",
        "key",
        "ref",
        "sender_key",
        "sender_ref",
        "weak_refs",
    )

    def __init__(
        self,
        ref: Ref,
        sender_ref: Ref | None,
        dispatch_uid: Hashable | None,
        call: Call,
        key: Hashable,
    ) -> None:
        self.key = key  # lookup_key() of the connect() call
        self.ref = ref
        self.sender_ref = sender_ref  # None: any sender
        # The sender's key, still known once the sender is gone (its plan is filed under it).
        self.sender_key = None if sender_ref is None else sender_key(sender_ref())
        self.weak_refs = tuple(r for r in (ref, sender_ref) if isinstance(r, weakref.ref))
        self.dispatch_uid = dispatch_uid
        self.entry: Entry = (ref, call)  # what a plan holds for this receiver

    @property
    def alive(self) -> bool:
        return self.ref() is not None and (self.sender_ref is None or self.sender_ref() is not None)

    def is_for(self, sender: Any) -> bool:
        """Connected for exactly this sender (``None``: connected for any sender)."""
        if sender is None:
            return self.sender_ref is None
        return self.sender_ref is not None and same_sender(self.sender_ref(), sender)

    def matches(self, receiver: Receiver | None, dispatch_uid: Hashable | None) -> bool:
        """Same receiver (by identity) or same ``dispatch_uid``; dead ones never match."""
        if dispatch_uid is not None:
            # `is` first, as dicts do: a uid need not equal itself (float("nan")).
            same = self.dispatch_uid is dispatch_uid or self.dispatch_uid == dispatch_uid
            return same and self.alive
        target = self.ref()
        return self.dispatch_uid is None and target is not None and same_target(target, receiver)
