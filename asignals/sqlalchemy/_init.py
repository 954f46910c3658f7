"""``pre_init`` and ``post_init``: sent inline from constructors and loads, never awaited.

Their mapper-wide instance events (``init``, ``load``) are installed when the first
receiver connects; only sync receivers are accepted, since nothing can be awaited there.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.orm import Mapper

from ._seams import describe, send_inline
from ._signals import _ModelSignal


class _InitSignal(_ModelSignal):
    """`pre_init` / `post_init`: sent inline from constructors and loads, never awaited."""

    def _accept(self, receiver: Any, is_async: bool, to_thread: bool) -> None:
        if is_async or to_thread:
            what = "a coroutine receiver" if is_async else "connected with to_thread=True"
            raise TypeError(
                f"{self!r} is sent inline from the model's constructor and on every load, "
                f"where nothing can be awaited, but {describe(receiver)} is {what}; connect "
                f"a plain function (it may send an AsyncSignal of your own later)"
            )
        _install_hooks()

    def _send_inline(self, sender: Any, **payload: Any) -> None:
        """Run every (sync) receiver now, on this thread, whatever thread it is: ``send``
        without its check for a running event loop (a script or a sync session has none)."""
        send_inline(self, sender, payload)


pre_init = _InitSignal(
    "pre_init",
    doc="Inline from the constructor, before __init__ runs; payload args, kwargs. Sync "
    "receivers only.",
)
post_init = _InitSignal(
    "post_init",
    doc="Inline after the constructor, and after each load from the database; payload "
    "instance. Sync receivers only.",
)

_hooks_installed = False


def _install_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    event.listen(Mapper, "init", _on_init)
    event.listen(Mapper, "load", _on_load)
    _hooks_installed = True


def _on_init(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    cls = type(instance)
    if not pre_init._idle():
        pre_init._send_inline(cls, args=args, kwargs=kwargs)
    # post_init after the constructor: SQLAlchemy calls manager.original_init right after
    # this event, so wrap it (once per class) to send post_init when it returns.
    manager = sqlalchemy.inspect(instance).manager
    original = manager.original_init
    if original is not None and original not in _post_init_wrappers:
        manager.original_init = _with_post_init(original)


_post_init_wrappers: weakref.WeakSet[Callable[..., None]] = weakref.WeakSet()


def _with_post_init(original: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if not post_init._idle():
            post_init._send_inline(type(self), instance=self)

    _post_init_wrappers.add(__init__)
    return __init__


def _on_load(instance: Any, context: Any) -> None:
    if not post_init._idle():
        post_init._send_inline(type(instance), instance=instance)
