"""The signals a bridge carries, and how: registration and its rules.

A signal crosses under its name, fanned out (a pub/sub channel) or queued (a stream that
consumer groups read); one bridge carries it, and signals are registered before the bridge
starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, Literal

from .._checks import check_count, check_seconds
from .._hooks import BRIDGE, add_hook, find_hook, remove_hook
from .._signal import AsyncSignal
from ._hook import BridgeHook
from ._types import Settings


def key_of(prefix: str, mode: Literal["fanout", "queue"], name: str, cluster: bool) -> str:
    """The channel (fanout) or stream (queue) of the signal *name* under *prefix*.

    In a cluster the name is a hash tag (``{name}``): every key made from this one (the
    dead letters, the dedupe records) is in the same slot, so one transaction can move a
    message between them, while different signals spread over the slots.
    """
    return f"{prefix}:{mode}:{{{name}}}" if cluster else f"{prefix}:{mode}:{name}"


@dataclasses.dataclass(slots=True)
class Group:
    """A consumer group this process consumes a queued signal for."""

    name: str
    claim_after: float
    max_deliveries: int
    dedupe: float | None = None  # seconds each finished envelope id is remembered
    name_bytes: bytes = dataclasses.field(init=False)  # as Redis replies carry it

    def __post_init__(self) -> None:
        self.name_bytes = self.name.encode()


@dataclasses.dataclass(slots=True, eq=False)
class Route:
    """One signal the bridge carries, and how."""

    signal: AsyncSignal
    name: str  # the signal's name: its name on the wire
    mode: Literal["fanout", "queue"]
    key: str  # the channel (fanout) or the stream (queue)
    maxlen: int
    groups: dict[str, Group] = dataclasses.field(default_factory=dict)
    hook: BridgeHook | None = None
    sharded: bool = False  # fanout through sharded pub/sub (SPUBLISH), in a cluster
    # What a send does, for errors: made once, not on every send.
    sending: str = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        verb = "publishing" if self.mode == "fanout" else "enqueueing"
        self.sending = f"{verb} {self.signal!r}"


class Routes:
    """The routes of one bridge, by signal name; each new one gets the hook *make_hook* makes."""

    def __init__(
        self, bridge: object, settings: Settings, make_hook: Callable[[Route], BridgeHook]
    ) -> None:
        self.bridge = bridge  # named in errors
        self.prefix = settings.prefix
        self.maxlen = settings.maxlen
        self.cluster = settings.cluster
        self._make_hook = make_hook
        self._by_name: dict[str, Route] = {}

    def __iter__(self) -> Iterator[Route]:
        return iter(self._by_name.values())

    def find(self, signal: Any) -> Route | None:
        """The route of *signal*, if this bridge carries it."""
        route = self._by_name.get(getattr(signal, "name", None) or "")
        return route if route is not None and route.signal is signal else None

    def fanout(self, signal: AsyncSignal, *, running: bool) -> None:
        """Carry *signal* by pub/sub (see `RedisBridge.fanout`)."""
        route = self._route(signal, "fanout", None, running)
        if route.hook is None:
            self._install(route)

    def queue(
        self,
        signal: AsyncSignal,
        group: str | None,
        claim_after: float,
        max_deliveries: int,
        maxlen: int | None,
        dedupe: float | None,
        *,
        running: bool,
    ) -> None:
        """Carry *signal* through a stream, consumed for *group* (see `RedisBridge.queue`)."""
        check_seconds(f"queue({signal!r}): claim_after", claim_after)
        check_count(f"queue({signal!r}): max_deliveries", max_deliveries)
        if maxlen is not None:
            check_count(f"queue({signal!r}): maxlen", maxlen)
        if group is not None and (not isinstance(group, str) or not group):
            raise TypeError(f"queue({signal!r}): group must be a non-empty string or None")
        if dedupe is not None:
            check_seconds(f"queue({signal!r}): dedupe", dedupe)
            if group is None:
                raise ValueError(
                    f"queue({signal!r}, dedupe={dedupe!r}): dedupe is kept per consumer group; "
                    f"pass group= as well"
                )
        route = self._route(signal, "queue", maxlen, running)
        if group is not None:
            if running and group not in route.groups:
                raise RuntimeError(
                    f"queue({signal!r}, group={group!r}): the bridge is running; add groups "
                    f"before `async with bridge:`"
                )
            route.groups[group] = Group(
                group,
                float(claim_after),
                max_deliveries,
                None if dedupe is None else float(dedupe),
            )
        if route.hook is None:
            self._install(route)

    def discard(self, signal: AsyncSignal, *, running: bool) -> bool:
        """Stop carrying *signal* (see `RedisBridge.discard`)."""
        route = self.find(signal)
        if route is None:
            return False
        if running and route.groups:
            raise RuntimeError(f"discard({signal!r}): stop the bridge first (it consumes it)")
        del self._by_name[route.name]
        if route.hook is not None:
            remove_hook(signal, route.hook)
        return True

    def _route(
        self,
        signal: AsyncSignal,
        mode: Literal["fanout", "queue"],
        maxlen: int | None,
        running: bool,
    ) -> Route:
        if not isinstance(signal, AsyncSignal):
            raise TypeError(f"RedisBridge.{mode}() takes AsyncSignal objects, got {signal!r}")
        name = signal.name
        if not name:
            raise ValueError(
                f"{mode}({signal!r}): a signal crosses Redis under its name, and this one has "
                f"none; create it as AsyncSignal({signal.label.rpartition('.')[2]!r})"
            )
        route = self._by_name.get(name)
        if route is not None:
            if route.signal is not signal:
                raise ValueError(
                    f"{mode}({signal!r}): {self.bridge!r} already carries another signal named "
                    f"{name!r}; signal names must be unique across the app"
                )
            if route.mode != mode:
                raise ValueError(
                    f"{mode}({signal!r}): the signal is already registered with "
                    f"{route.mode}(); a signal is either fanned out or queued"
                )
            if maxlen is not None:
                route.maxlen = maxlen
            return route
        if running:
            raise RuntimeError(
                f"{mode}({signal!r}): {self.bridge!r} is running; register signals before "
                f"`async with bridge:`"
            )
        key = key_of(self.prefix, mode, name, self.cluster)
        route = Route(signal, name, mode, key, maxlen if maxlen is not None else self.maxlen)
        route.sharded = self.cluster
        self._by_name[name] = route
        return route

    def _install(self, route: Route) -> None:
        hook = self._make_hook(route)
        if find_hook(route.signal, BridgeHook) is not None:
            del self._by_name[route.name]
            raise ValueError(
                f"{route.signal!r} is already carried by another RedisBridge; one bridge per signal"
            )
        add_hook(route.signal, hook, BRIDGE)
        route.hook = hook
