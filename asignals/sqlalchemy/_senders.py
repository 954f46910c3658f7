"""Lazy senders: connections made with a mapped class's dotted path before it is mapped.

``post_save.connect(r, sender="shop.models.Order")`` waits here until a class of that module
and qualified name is mapped, then connects *r* for the class itself. When the mappers are
configured and a path still names no mapped class, a warning says so (once per path).
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import warnings
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.orm import Mapper

from ._seams import make_ref

if TYPE_CHECKING:
    from ._signals import _ModelSignal


class _LazySenders:
    """Connections made with a dotted path as sender, waiting for that class to be mapped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # path -> [(signal, receiver ref, options)], in connection order
        self._pending: dict[str, list[tuple[_ModelSignal, Callable[[], Any], dict[str, Any]]]] = {}
        self._warned: set[str] = set()
        self._configured = False  # every mapper constructed since import is configured

    def resolve(self, path: str) -> type | None:
        """The mapped class *path* names, if its module is imported already (none is)."""
        module_name, _, rest = path.rpartition(".")
        while module_name:
            module = sys.modules.get(module_name)
            if module is not None:
                target: Any = module
                for part in rest.split("."):
                    target = getattr(target, part, None)
                if isinstance(target, type) and _is_mapped(target):
                    return target
                return None
            module_name, _, head = module_name.rpartition(".")
            rest = f"{head}.{rest}"
        return None

    def add(self, signal: _ModelSignal, path: str, receiver: Any, options: dict[str, Any]) -> None:
        ref = make_ref(receiver, options["weak"], lambda _: None)
        with self._lock:
            entries = self._pending.setdefault(path, [])
            if not any(s is signal and r() is receiver for s, r, _ in entries):
                entries.append((signal, ref, options))
            configured = self._configured
        if configured and _cannot_appear(path):
            # The mappers are configured already and may never be again: say it now.
            self._warn_unmatched(stacklevel=4, only=path)

    def listen(self) -> None:
        """Follow the mappers from now on: each new one (a lazy sender's class, maybe; the
        mappers are no longer all configured) and each configuration."""
        event.listen(Mapper, "after_mapper_constructed", self._on_mapped)
        event.listen(Mapper, "after_configured", self._on_configured)

    def discard(
        self, signal: _ModelSignal, path: str, receiver: Any, dispatch_uid: Hashable | None
    ) -> bool:
        with self._lock:
            entries = self._pending.get(path, [])
            for index, (s, ref, options) in enumerate(entries):
                same = (
                    options["dispatch_uid"] == dispatch_uid
                    if dispatch_uid is not None
                    else ref() is receiver
                )
                if s is signal and same:
                    del entries[index]
                    if not entries:
                        del self._pending[path]
                    return True
        return False

    def _on_mapped(self, mapper: Mapper[Any], class_: type) -> None:
        path = f"{class_.__module__}.{class_.__qualname__}"
        with self._lock:
            self._configured = False
            entries = self._pending.pop(path, None)
        for signal, ref, options in entries or ():
            receiver = ref()
            if receiver is not None:
                signal._connect_mapped(receiver, class_, options)

    def _on_configured(self) -> None:
        with self._lock:
            self._configured = True
        self._warn_unmatched(stacklevel=2)

    def _warn_unmatched(self, stacklevel: int, only: str | None = None) -> None:
        """Warn, once per path, of each path (or *only*) that names no mapped class although
        the mappers are configured (a class mapped later still gets its connections)."""
        with self._lock:
            unmatched = [
                path
                for path in ([only] if only is not None else self._pending)
                if path not in self._warned and path in self._pending
            ]
            self._warned.update(unmatched)
            names = {
                path: ", ".join(sorted({repr(s.name) for s, _, _ in self._pending[path]}))
                for path in unmatched
            }
        for path in unmatched:
            warnings.warn(
                f"asignals.sqlalchemy: receivers of {names[path]} were connected with "
                f"sender={path!r}, but no mapped class has that module and name (mappers "
                f"are configured now); check the spelling: it is the class's "
                f"'module.QualName', as in 'shop.models.Order'",
                RuntimeWarning,
                stacklevel=stacklevel + 1,
            )


def _cannot_appear(path: str) -> bool:
    """*path* names no class that an import still to come could map: its module is imported
    (and done importing) without it, or no such module exists. Nothing is imported to
    find out (only a package that is imported already is searched)."""
    parts = path.split(".")
    for end in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:end]))
        if module is None:
            continue
        if end == len(parts) - 1 or not hasattr(module, "__path__"):
            # The class's own module (or a plain module on the way): imported. Only while it
            # is still being imported may the class come later.
            return not getattr(getattr(module, "__spec__", None), "_initializing", False)
        return importlib.util.find_spec(".".join(parts[: end + 1])) is None
    return importlib.util.find_spec(parts[0]) is None


def _is_mapped(cls: type) -> bool:
    return sqlalchemy.inspect(cls, raiseerr=False) is not None


lazy = _LazySenders()
lazy.listen()
