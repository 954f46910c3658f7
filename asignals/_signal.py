"""``AsyncSignal``: connecting receivers and sending to them."""

from __future__ import annotations

import heapq
import math
import threading
import weakref
from collections.abc import Callable, Coroutine, Hashable, Iterable
from typing import Any, Protocol, TypeVar

from ._dispatch import Plan, Responses, loop_for, loops, run_concurrently
from ._receivers import (
    Connection,
    Entry,
    Receiver,
    Ref,
    accepts_var_keyword,
    describe,
    is_coroutine_callable,
    lookup_key,
    make_call,
    make_ref,
    same_target,
    strong_ref,
)

R = TypeVar("R", bound=Callable[..., Any])

Plans = tuple[Plan, dict[int, tuple[Ref, Plan]]]
"""The plan for any sender, and the plans of the senders that have their own connections,
by ``id(sender)`` next to a reference that proves the id still means that sender."""


class SendHook(Protocol):
    """Installed by `asignals.testing`: sees every send and may replace its plan."""

    def __call__(self, sender: Any, payload: dict[str, Any], plan: Plan) -> Plan: ...

    def observes(self, sender: Any) -> bool:
        """Whether sends from *sender* are recorded (so they are worth making)."""
        ...


class AsyncSignal:
    """A named event that async code can ``await`` receivers for.

    Receivers are called as ``receiver(signal=signal, sender=sender, **payload)``, in the
    order they were connected, sync and coroutine receivers alike.

    Args:
        name: Shown in ``repr()``, log records and error messages.
        max_concurrency: At most this many receivers run at once in one ``gather`` or
            ``gather_robust`` call (``None``: no limit). Sequential sends ignore it.
        doc: What the signal means and which payload it carries, for humans.

    Example:
        ```python
        order_paid = AsyncSignal("order_paid", doc="Sent with order=... once paid.")

        @receiver(order_paid)
        async def send_receipt(sender, order, **kwargs):
            ...

        await order_paid.send(Shop, order=order)
        ```
    """

    def __init__(
        self, name: str, *, max_concurrency: int | None = None, doc: str | None = None
    ) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"AsyncSignal() needs a non-empty string name, got {name!r}")
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int)
        ):
            raise TypeError(
                f"AsyncSignal({name!r}): max_concurrency must be an int or None, "
                f"got {max_concurrency!r}"
            )
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(
                f"AsyncSignal({name!r}): max_concurrency must be at least 1 (or None for no "
                f"limit), got {max_concurrency}"
            )
        self.name = name
        self._max_concurrency = max_concurrency
        self.__doc__ = doc
        # Writers (connect, disconnect, pruning) hold the lock and publish new immutable
        # values; sends read `_plans` once, without locking, so a send keeps the snapshot
        # it started with and connect() is safe from any thread.
        self._lock = threading.Lock()
        self._connections: list[Connection] = []  # in connection order; sends never read it
        self._index: dict[Hashable, Connection] = {}  # by lookup_key()
        self._by_ref: dict[int, Connection] = {}  # by id() of its weak references
        self._prune_pending = False  # a death arrived while the lock was held
        self._plans: Plans = ((), {})
        self._hook: SendHook | None = None
        self._on_death = _death_callback(self)

    def __repr__(self) -> str:
        return f"<AsyncSignal {self.name!r}>"

    @property
    def max_concurrency(self) -> int | None:
        """The limit on receivers running at once in one ``gather`` (read-only)."""
        return self._max_concurrency

    # -- connecting ---------------------------------------------------------------------

    def connect(
        self,
        receiver: R,
        sender: Any = None,
        *,
        weak: bool = True,
        dispatch_uid: Hashable | None = None,
        to_thread: bool = False,
        timeout: float | None = None,
    ) -> R:
        """Connect *receiver*, to be called on every send from *sender* (``None``: any).

        Connecting the same receiver (or the same *dispatch_uid*) for the same sender again
        does nothing. Returns *receiver* unchanged, so this works as a decorator.

        Args:
            receiver: A function, coroutine function, bound method, callable object or
                ``functools.partial`` accepting ``**kwargs``.
            sender: Call the receiver only for sends from this object (compared by
                identity). ``None`` means every sender.
            weak: Hold the receiver through a weak reference (bound methods through
                ``weakref.WeakMethod``): once it is garbage-collected it is disconnected.
                Pass ``weak=False`` for lambdas and other throwaway callables.
            dispatch_uid: A hashable that identifies the connection instead of the
                receiver's identity, to prevent duplicates when a module is imported twice.
            to_thread: Run a blocking sync receiver in a worker thread.
            timeout: Seconds a coroutine (or ``to_thread``) receiver may take before it is
                cancelled and ``TimeoutError`` is raised in its place.

        Raises:
            TypeError: *receiver* is not callable, lacks ``**kwargs``, or cannot be weakly
                referenced with ``weak=True``; *dispatch_uid* is unhashable; *timeout* is
                not a number.
            ValueError: *timeout* is not a positive number, *timeout* is asked of an inline
                sync receiver, or *to_thread* of a coroutine receiver.

        Example:
            ```python
            def bump_metrics(sender, **kwargs):
                metrics.incr("orders")

            order_paid.connect(bump_metrics, sender=Shop)
            ```
        """
        is_async = self._check_receiver(receiver, to_thread, timeout)
        if dispatch_uid is not None:
            try:
                hash(dispatch_uid)
            except TypeError:
                raise TypeError(
                    f"{self!r}.connect(): dispatch_uid must be hashable, got {dispatch_uid!r}; "
                    f"use a string such as 'myapp.receivers.{getattr(receiver, '__name__', 'f')}'"
                ) from None
        try:
            ref = make_ref(receiver, weak, self._on_death)
        except TypeError:
            raise TypeError(
                f"{self!r}.connect(): {describe(receiver)} cannot be weakly referenced; "
                f"pass weak=False to keep a strong reference to it"
            ) from None
        sender_ref = None if sender is None else _sender_ref(sender, self._on_death)
        key = lookup_key(receiver, sender, dispatch_uid)
        call = make_call(is_async, to_thread, timeout)
        with self._lock:
            self._prune_if_pending()
            if self._find(key, receiver, sender, dispatch_uid) is None:
                self._add(Connection(ref, sender_ref, dispatch_uid, call, key))
        return receiver

    def disconnect(
        self,
        receiver: Receiver | None = None,
        sender: Any = None,
        *,
        dispatch_uid: Hashable | None = None,
    ) -> bool:
        """Disconnect a receiver connected for *sender*; return whether one was.

        Args:
            receiver: The receiver to disconnect (ignored when *dispatch_uid* is given).
            sender: The sender it was connected for: ``disconnect(f)`` does not remove a
                connection made with ``connect(f, sender=Shop)``.
            dispatch_uid: The ``dispatch_uid`` it was connected with.

        Raises:
            TypeError: Neither *receiver* nor *dispatch_uid* was given.

        Example:
            ```python
            assert order_paid.disconnect(bump_metrics, sender=Shop)
            ```
        """
        if receiver is None and dispatch_uid is None:
            raise TypeError(
                f"{self!r}.disconnect() needs the receiver or the dispatch_uid it was "
                f"connected with"
            )
        key = lookup_key(receiver, sender, dispatch_uid)
        with self._lock:
            self._prune_if_pending()
            found = self._find(key, receiver, sender, dispatch_uid)
            if found is None:
                return False
            self._remove(found)
        return True

    def receivers_for(self, sender: Any = None) -> list[Receiver]:
        """The live receivers a send from *sender* would call, in call order.

        ``receivers_for(None)`` lists the receivers connected for any sender.

        Example:
            ```python
            assert order_paid.receivers_for(Shop) == [send_receipt, bump_metrics]
            ```
        """
        return [r for ref, _ in self._plan_for(sender) if (r := ref()) is not None]

    def has_listeners(self, sender: Any = None) -> bool:
        """Whether a send from *sender* would call at least one receiver.

        Example:
            ```python
            if order_paid.has_listeners(Shop):
                await order_paid.send(Shop, order=build_expensive_summary())
            ```
        """
        if self._hook is not None and self._hook.observes(sender):
            return True  # asignals.testing.capture() wants to see the send
        if not self._connections:  # the usual answer for a library's signal: make it cheap
            return False
        # A plain loop, not any(): the ASGI middleware asks this on every request.
        for ref, _ in self._plan_for(sender):  # noqa: SIM110
            if ref() is not None:
                return True
        return False

    # -- sending ------------------------------------------------------------------------
    # Each send method is a plain function returning the loop's coroutine, so a send
    # creates one coroutine, not two; `await signal.send(...)` reads the same.

    def send(
        self, sender: Any = None, /, *args: Any, **named: Any
    ) -> Coroutine[Any, Any, Responses]:
        """Call the receivers one after another; the first exception propagates at once.

        Returns ``[(receiver, response), ...]`` in connection order. Receivers are called
        as ``receiver(signal=self, sender=sender, **payload)``.

        Raises:
            TypeError: When called (before the await): a positional payload item, a payload
                item named ``signal``, or the sender given both positionally and by name.
                The same holds for the other three send methods.

        Example:
            ```python
            results = await order_paid.send(Shop, order=order)
            ```
        """
        return self._start(False, False, sender, args, named)

    def send_robust(
        self, sender: Any = None, /, *args: Any, **named: Any
    ) -> Coroutine[Any, Any, Responses]:
        """Like `send`, but an `Exception` becomes that receiver's response.

        Each such exception (traceback attached) is logged to the `asignals` logger and
        the remaining receivers still run. Cancellation and other `BaseException`
        subclasses propagate.

        Example:
            ```python
            for receiver, response in await order_paid.send_robust(Shop, order=order):
                if isinstance(response, Exception):
                    ...
            ```
        """
        return self._start(False, True, sender, args, named)

    def gather(
        self, sender: Any = None, /, *args: Any, **named: Any
    ) -> Coroutine[Any, Any, Responses]:
        """Run the receivers concurrently; responses in connection order.

        Structured: the first failure cancels the other receivers and raises an
        ``ExceptionGroup``; when ``gather`` returns or raises, no receiver is still running.

        Example:
            ```python
            results = await order_paid.gather(Shop, order=order)
            ```
        """
        return self._start(True, False, sender, args, named)

    def gather_robust(
        self, sender: Any = None, /, *args: Any, **named: Any
    ) -> Coroutine[Any, Any, Responses]:
        """Run the receivers concurrently, each to completion.

        An `Exception` raised by a receiver becomes its response and is logged to the
        `asignals` logger, as in `send_robust`; cancellation and other `BaseException`
        subclasses propagate (after the other receivers are cancelled).

        Example:
            ```python
            results = await order_paid.gather_robust(Shop, order=order)
            ```
        """
        return self._start(True, True, sender, args, named)

    # -- internals ----------------------------------------------------------------------

    def _start(
        self,
        concurrent: bool,
        robust: bool,
        sender: Any,
        args: tuple[Any, ...],
        payload: dict[str, Any],
    ) -> Coroutine[Any, Any, Responses]:
        """The one send prologue: check the arguments, find the plan, start the loop."""
        if args or "sender" in payload or "signal" in payload:
            sender = self._fix_send_arguments(sender, args, payload)
        any_plan, sender_plans = self._plans  # _plan_for(), inlined: this is the hot path
        found = sender_plans.get(id(sender))
        plan = found[1] if found is not None and found[0]() is sender else any_plan
        if self._hook is not None:
            plan = self._hook(sender, payload, plan)
        if not plan:
            return _no_receivers()  # the common case for library signals: make it cheapest
        shape = tuple(payload)
        loop = loops.get(shape) or loop_for(shape)
        if concurrent:
            return run_concurrently(
                self, loop, plan, sender, payload, robust, self._max_concurrency
            )
        return loop(self, plan, robust, sender, payload)

    def _fix_send_arguments(self, sender: Any, args: tuple[Any, ...], named: dict[str, Any]) -> Any:
        if args:
            raise TypeError(
                f"{self!r}: the payload of a send is keyword-only; got {len(args)} extra "
                f"positional argument(s). Call send(sender, name=value, ...)"
            )
        if "signal" in named:
            raise TypeError(
                f"{self!r}: 'signal' is reserved (receivers get the signal as signal=...); "
                f"rename that payload item"
            )
        if sender is not None:
            raise TypeError(
                f"{self!r}: the sender was given twice, positionally and as sender=...; pass "
                f"it once: send(sender, **payload)"
            )
        return named.pop("sender")

    def _is_connected(self, receiver: Receiver, sender: Any) -> bool:
        """Whether *receiver* is connected for *sender*, with or without a dispatch_uid."""
        with self._lock:
            connections = list(self._connections)
        return any(c.is_for(sender) and same_target(c.ref(), receiver) for c in connections)

    def _plan_for(self, sender: Any) -> Plan:
        any_plan, sender_plans = self._plans
        found = sender_plans.get(id(sender))
        return found[1] if found is not None and found[0]() is sender else any_plan

    def _check_receiver(self, receiver: Any, to_thread: bool, timeout: float | None) -> bool:
        """Validate a receiver and its options; return whether it is a coroutine receiver."""
        if not callable(receiver):
            raise TypeError(
                f"{self!r}.connect(): receivers must be callable, got {describe(receiver)}"
            )
        if not accepts_var_keyword(receiver):
            raise TypeError(
                f"Signal receivers must accept keyword arguments (**kwargs): add **kwargs to "
                f"{describe(receiver)} before connecting it to {self!r}"
            )
        is_async = is_coroutine_callable(receiver)
        if to_thread and is_async:
            raise ValueError(
                f"{self!r}.connect(): to_thread=True is for blocking sync receivers, but "
                f"{describe(receiver)} is a coroutine receiver; drop to_thread"
            )
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, int | float):
                raise TypeError(
                    f"{self!r}.connect(): timeout must be a number of seconds, got {timeout!r}"
                )
            try:
                usable = timeout > 0 and math.isfinite(timeout)
            except OverflowError:  # an int too large for a float: no timer can take it
                usable = False
            if not usable:
                raise ValueError(
                    f"{self!r}.connect(): timeout must be a positive, finite number of "
                    f"seconds, got {timeout!r}"
                )
            if not (is_async or to_thread):
                raise ValueError(
                    f"{self!r}.connect(): {describe(receiver)} is a sync receiver that runs "
                    f"inline on the event loop, where it cannot be interrupted, so it takes "
                    f"no timeout; pass to_thread=True as well, or make it a coroutine function"
                )
        return is_async

    # -- publishing (hold the lock) --------------------------------------------------------
    # Sends read `_plans` without the lock, so every change publishes values that are whole
    # on their own: a new tuple, or one sender's new plan stored into the dict in place (a
    # send reads one plan from it, old or new, and a copy per connect would make a
    # connection per object quadratic).

    def _find(
        self, key: Hashable, receiver: Receiver | None, sender: Any, dispatch_uid: Hashable | None
    ) -> Connection | None:
        found = self._index.get(key)
        if found is not None and found.is_for(sender) and found.matches(receiver, dispatch_uid):
            return found
        return None

    def _add(self, connection: Connection) -> None:
        self._connections.append(connection)
        self._index[connection.key] = connection
        for ref in connection.weak_refs:
            self._by_ref[id(ref)] = connection
        any_plan, sender_plans = self._plans
        entry = connection.entry
        if connection.sender_ref is None:  # a new last entry in every plan
            self._plans = (
                (*any_plan, entry),
                {key: (ref, (*plan, entry)) for key, (ref, plan) in sender_plans.items()},
            )
            return
        target = connection.sender_ref()
        found = sender_plans.get(id(target))
        plan = found[1] if found is not None and found[0]() is target else any_plan
        sender_plans[id(target)] = (connection.sender_ref, (*plan, entry))

    def _remove(self, connection: Connection) -> None:
        """Take out one connection, also one whose receiver or sender just died."""
        self._connections.remove(connection)
        if self._index.get(connection.key) is connection:
            del self._index[connection.key]
        for ref in connection.weak_refs:
            self._by_ref.pop(id(ref), None)
        any_plan, sender_plans = self._plans
        entry = connection.entry
        sender_id = connection.sender_id
        if sender_id is None:  # connected for any sender: in every plan
            self._plans = (
                _without(any_plan, entry),
                {key: (ref, _without(plan, entry)) for key, (ref, plan) in sender_plans.items()},
            )
            return
        found = sender_plans.get(sender_id)
        if found is None:
            return
        plan = _without(found[1], entry)  # unchanged if the id now means another sender
        if len(plan) > len(any_plan):
            sender_plans[sender_id] = (found[0], plan)
        else:  # nothing of its own left: the sender goes back to the plan for any sender
            del sender_plans[sender_id]

    def _publish(self, connections: list[Connection]) -> None:
        """Rebuild everything from *connections*, in one pass.

        The pass groups the connections by sender; each sender's plan merges its own
        entries with the any-sender ones by connection index, so the cost is linear.
        """
        for_any: list[tuple[int, Entry]] = []
        by_sender: dict[int, tuple[Ref, list[tuple[int, Entry]]]] = {}
        for index, connection in enumerate(connections):
            sender_ref = connection.sender_ref
            if sender_ref is None:
                for_any.append((index, connection.entry))
            elif (target := sender_ref()) is not None:
                by_sender.setdefault(id(target), (sender_ref, []))[1].append(
                    (index, connection.entry)
                )
        sender_plans = {
            key: (sender_ref, tuple(entry for _, entry in heapq.merge(for_any, own)))
            for key, (sender_ref, own) in by_sender.items()
        }
        self._connections = connections
        self._index = {connection.key: connection for connection in connections}
        self._by_ref = {id(ref): c for c in connections for ref in c.weak_refs}
        self._plans = (tuple(entry for _, entry in for_any), sender_plans)

    def _forget(self, dead: Ref) -> None:
        """A weak reference of one connection died: take that connection out."""
        if self._lock.acquire(blocking=False):
            try:
                connection = self._by_ref.get(id(dead))
                if connection is not None and any(ref is dead for ref in connection.weak_refs):
                    self._remove(connection)
            finally:
                self._lock.release()
        else:
            # A connect() or disconnect() is running, perhaps in this very thread (the
            # collection happened inside it): the next one prunes. Until then the loop
            # skips the dead reference, which returns None.
            self._prune_pending = True

    def _prune_if_pending(self) -> None:
        if self._prune_pending:
            self._prune_pending = False
            self._publish([c for c in self._connections if c.alive])


def _without(plan: Plan, entry: Entry) -> Plan:
    for index, candidate in enumerate(plan):
        if candidate is entry:
            return plan[:index] + plan[index + 1 :]
    return plan


async def _no_receivers() -> Responses:
    return []


def _death_callback(signal: AsyncSignal) -> Callable[[Any], None]:
    """A weakref callback that updates *signal* without keeping it alive."""
    signal_ref = weakref.ref(signal)

    def on_death(dead: Ref) -> None:
        alive = signal_ref()
        if alive is not None:
            alive._forget(dead)

    return on_death


def _sender_ref(sender: Any, on_death: Callable[[Any], None]) -> Ref:
    """Reference a sender weakly when possible, so that connecting does not keep it alive."""
    try:
        return weakref.ref(sender, on_death)
    except TypeError:
        # Strings, numbers, tuples: no weak references to them exist, so the connection
        # holds the sender the user named (it is compared by identity, never by id() alone).
        return strong_ref(sender)


def _as_list(signals: Any) -> list[Any]:
    try:
        return list(signals)
    except TypeError:
        return []


def receiver(
    signal: AsyncSignal | Iterable[AsyncSignal],
    *,
    sender: Any = None,
    weak: bool = True,
    dispatch_uid: Hashable | None = None,
    to_thread: bool = False,
    timeout: float | None = None,
) -> Callable[[R], R]:
    """Decorator connecting the function below it to one signal or to each of several.

    Takes every option of `AsyncSignal.connect` and returns the function unchanged.

    Example:
        ```python
        @receiver([order_paid, order_refunded], sender=Shop)
        async def refresh_totals(sender, **kwargs):
            ...
        ```
    """
    signals = [signal] if isinstance(signal, AsyncSignal) else _as_list(signal)
    if not signals or not all(isinstance(item, AsyncSignal) for item in signals):
        raise TypeError(f"@receiver() takes an AsyncSignal or a list of them, got {signal!r}")

    def connect_to_all(func: R) -> R:
        for item in signals:
            item.connect(
                func,
                sender,
                weak=weak,
                dispatch_uid=dispatch_uid,
                to_thread=to_thread,
                timeout=timeout,
            )
        return func

    return connect_to_all
