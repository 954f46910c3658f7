"""``AsyncSignal``: connecting receivers and sending to them."""

from __future__ import annotations

import sys
import weakref
from asyncio import _get_running_loop
from collections.abc import Callable, Coroutine, Hashable, Iterable
from dataclasses import dataclass
from types import FunctionType
from typing import Any, Generic, Protocol, TypeVar, cast, overload

from typing_extensions import ParamSpec

from . import _sync
from ._checks import check_seconds
from ._connections import NOT_READY, Connections
from ._dispatch import in_trio_run, prepare
from ._gather import run_concurrently
from ._loops import Loop, loop_for, takes_any_payload
from ._plans import Plan, Responses, kind_of
from ._receivers import (
    Receiver,
    accepts_var_keyword,
    describe,
    is_coroutine_callable,
    make_call,
    make_ref,
)

R = TypeVar("R", bound=Callable[..., Any])
T = TypeVar("T")
Q = ParamSpec("Q")

P = ParamSpec("P", default=...)
"""The payload of a typed signal (see `asignals.signal`); any payload when not given."""


class SendHook(Protocol):
    """Installed by `asignals.testing`: sees every send and may replace its plan."""

    def __call__(self, sender: Any, payload: dict[str, Any], plan: Plan) -> Plan: ...

    def observes(self, sender: Any) -> bool:
        """Whether sends from *sender* are recorded (so they are worth making)."""
        ...


@dataclass(frozen=True)
class SignalStatistics:
    """What `AsyncSignal.statistics` reports about a signal's connections."""

    receivers: int
    """Live connections: receivers connected for any sender, and for particular senders
    (a receiver connected for two senders counts twice)."""
    weak: int
    """How many of them hold their receiver through a weak reference (``weak=True``)."""
    senders: int
    """Senders that have receivers of their own (``connect(r, sender=...)``)."""
    hooked: bool
    """Whether a send hook sees every send: an `asignals.testing` helper is active, or an
    `asignals.redis` bridge carries the signal."""
    failures: int = 0
    """Exceptions of receivers that robust sends caught (and logged) since the signal was
    created: `send_robust`, `gather_robust`, `send_robust_sync`, and the model signals
    delivered after a commit. Each one is work that did not happen; alert when it grows."""


_named: dict[str, weakref.WeakSet[AsyncSignal[...]]] = {}
"""The named signals alive in this process, by name (`asignals._dispatch.named`)."""


class AsyncSignal(Connections, Generic[P]):
    """An event that async code can ``await`` receivers for.

    Receivers are called as ``receiver(signal=signal, sender=sender, **payload)``, in the
    order they were connected, sync and coroutine receivers alike.

    Args:
        name: Shown in ``repr()``, log records and error messages. Optional, as with
            Django's ``Signal()``: an unnamed signal is shown by the module variable it is
            assigned to (``shop.signals.order_paid``), or else by the module and line
            that created it.
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

    name: str | None
    """The name given to the constructor (``None`` for an unnamed signal)."""

    _listed = True
    """Found by its name (`asignals._dispatch.named`: how an outbox's relay finds the
    signal of a stored event); a subclass for internal use says False."""

    def __init__(
        self,
        name: str | None = None,
        *,
        max_concurrency: int | None = None,
        doc: str | None = None,
    ) -> None:
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(
                f"AsyncSignal(): the name must be a non-empty string or left out, got {name!r}"
            )
        self.name = name
        self._origin = _origin(self) if name is None else None
        if name is not None and self._listed:
            _named.setdefault(name, weakref.WeakSet()).add(self)
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int)
        ):
            raise TypeError(
                f"{self!r}: max_concurrency must be an int or None, got {max_concurrency!r}"
            )
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(
                f"{self!r}: max_concurrency must be at least 1 (or None for no limit), "
                f"got {max_concurrency}"
            )
        self._max_concurrency = max_concurrency
        self.__doc__ = doc
        Connections.__init__(self)
        self._hook: SendHook | None = None
        self._failures = 0  # receivers' exceptions a robust send caught (statistics())
        self._coroutine_names: tuple[str, ...] = ()  # see _name_sends()
        self._no_receiver_sends: tuple[Callable[..., Coroutine[Any, Any, Responses]], ...] = ()
        self._named_loops: dict[tuple[tuple[str, ...], type], tuple[Loop, Loop]] = {}
        self._misses = 0  # sends whose names were not the prepared send's (_forget_loops)

    @property
    def label(self) -> str:
        """How messages and logs name this signal: its name, or for an unnamed signal the
        module variable holding it (``shop.signals.order_paid``), or else where it was
        created (``shop.signals:12``)."""
        if self.name is not None:
            return self.name
        assert self._origin is not None
        module, line = self._origin
        namespace = getattr(sys.modules.get(module), "__dict__", {})
        for variable, value in list(namespace.items()):
            if value is self:
                return f"{module}.{variable}"
        return f"{module}:{line}"

    def _name_sends(self) -> tuple[str, ...]:
        """Name the coroutines of the four send modes (at the first send, when an unnamed
        signal has been assigned to its variable), so that a forgotten ``await`` warns
        about ``order_paid.send``; return the names.

        Sends read the two tuples as plain attributes, empty until this has run: a
        ``cached_property`` there cost a tenth of a one-receiver send.
        """
        label = self.label
        names = tuple(f"{label}.{mode}" for mode in _MODES)
        no_receiver_sends = []
        for name in names:
            # A coroutine takes its name from its function: copies of _no_receivers named
            # after each mode let that path pay nothing per send for the name.
            send = FunctionType(
                _no_receivers.__code__, _no_receivers.__globals__, name, _no_receivers.__defaults__
            )
            send.__qualname__ = name
            no_receiver_sends.append(send)
        self._no_receiver_sends = tuple(no_receiver_sends)
        self._coroutine_names = names
        return names

    def __repr__(self) -> str:
        if self.name is not None:
            return f"<AsyncSignal {self.name!r}>"
        return f"<AsyncSignal {self.label}>"

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
        outbox: Any = None,
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
            outbox: An `asignals.sqlalchemy.Outbox`: the receiver becomes durable. Only
                the model signals ``post_save``, ``post_delete`` and ``m2m_changed`` take
                it; any other signal is sent durably with ``outbox.send()``.

        Raises:
            TypeError: *receiver* is not callable, lacks ``**kwargs``, or cannot be weakly
                referenced with ``weak=True``; *dispatch_uid* is unhashable; *timeout* is
                not a number; *outbox* is given for a signal that takes none.
            ValueError: *timeout* is not a positive number, *timeout* is asked of an inline
                sync receiver, or *to_thread* of a coroutine receiver.

        Example:
            ```python
            def bump_metrics(sender, **kwargs):
                metrics.incr("orders")

            order_paid.connect(bump_metrics, sender=Shop)
            ```
        """
        if outbox is not None:
            raise TypeError(
                f"{self!r}.connect(outbox=...): only the model signals post_save, post_delete "
                f"and m2m_changed (asignals.sqlalchemy) have durable receivers; connect "
                f"{describe(receiver)} without outbox= and send durably with "
                f"outbox.send(session, {self.label}, sender, **payload) in the transaction"
            )
        is_async = self._check_receiver(receiver, to_thread, timeout)
        self._accept(receiver, is_async, to_thread)
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
        self._connect(receiver, ref, sender, dispatch_uid, make_call(is_async, to_thread, timeout))
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
        return self._disconnect(receiver, sender, dispatch_uid)

    def receivers_for(self, sender: Any = None) -> list[Receiver]:
        """The live receivers a send from *sender* would call, in call order.

        ``receivers_for(None)`` lists the receivers connected for any sender.

        Example:
            ```python
            assert order_paid.receivers_for(Shop) == [send_receipt, bump_metrics]
            ```
        """
        return [r for ref, _ in self._plan_for(sender) if (r := ref()) is not None]

    def statistics(self) -> SignalStatistics:
        """How many receivers are connected, and how, and how many of them failed in
        robust sends: a snapshot, for tests, dashboards and alerts.

        Example:
            ```python
            stats = order_paid.statistics()
            assert stats.receivers == 2 and stats.senders == 1  # one is for Shop only
            if stats.failures > last_seen:
                alert(f"{stats.failures - last_seen} order_paid receivers failed")
            ```
        """
        with self._lock:
            live = [connection for connection in self._connections if connection.alive]
        return SignalStatistics(
            receivers=len(live),
            weak=sum(1 for connection in live if isinstance(connection.ref, weakref.ref)),
            senders=len({c.sender_key for c in live if c.sender_ref is not None}),
            hooked=self._hook is not None,
            failures=self._failures,
        )

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
        # The ASGI middleware asks this on every request: the plan found as _plan_to_send()
        # finds it (the per-sender lookup, half the cost, only while some sender has a plan
        # of its own), and a plain loop, not any().
        any_plan, sender_plans = self._plans
        for ref, _ in self._plan_for(sender) if sender_plans else any_plan:
            if ref() is not None:
                return True
        return False

    # -- sending ------------------------------------------------------------------------
    # Each send method is a plain function returning the loop's coroutine, so a send
    # creates one coroutine, not two; `await signal.send(...)` reads the same. The payload
    # is typed by P: a typed signal (`asignals.signal`) checks it, an untyped one takes any.
    # send and send_robust take the sender as a positional-only parameter, which spares a
    # tuple per send (about 6% of a one-receiver send); `TypedSignal` declares them with P
    # for type checkers.

    def send(
        self, sender: Any = None, /, *args: Any, **payload: Any
    ) -> Coroutine[Any, Any, Responses]:
        """Call the receivers one after another; the first exception propagates at once.

        Called as ``send(sender, **payload)``. Returns ``[(receiver, response), ...]`` in
        connection order. Receivers are called as
        ``receiver(signal=self, sender=sender, **payload)``.

        Raises:
            RuntimeError: When called in a thread that runs no event loop (asyncio, uvloop
                or trio): sync code calling ``send(...)`` as in Django, where nothing
                would await the send and no receiver would run. Call `send_sync` there.
            TypeError: When called (before the await): a positional payload item, a payload
                item named ``signal``, or the sender given both positionally and by name.
                Every other awaitable send method raises both errors the same way.

        Example:
            ```python
            results = await order_paid.send(Shop, order=order)
            ```
        """
        # Is an event loop running in this thread to await what this returns? On asyncio
        # and uvloop one C call answers; trio is asked only when it says no.
        if _get_running_loop() is None and not in_trio_run():
            raise _sync.no_event_loop(self, "send")
        if args or "sender" in payload or "signal" in payload:
            sender = self._fix_send_arguments((sender, *args), payload)
        # The last prepared send, reused while valid for a payload of its length (its loop
        # checks the names); else prepared now (see asignals/_dispatch.py).
        plan, size, send, _, own = self._ready
        if len(payload) != size:
            plan, send, _ = self._prepare(sender, payload)
        elif own:  # some senders have receivers of their own: is this one of them?
            plan = self._plan_for(sender)
        return send(self, plan, sender, payload)

    def send_robust(
        self, sender: Any = None, /, *args: Any, **payload: Any
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
        if _get_running_loop() is None and not in_trio_run():
            raise _sync.no_event_loop(self, "send_robust")
        if args or "sender" in payload or "signal" in payload:
            sender = self._fix_send_arguments((sender, *args), payload)
        plan, size, _, send, own = self._ready
        if len(payload) != size:
            plan, _, send = self._prepare(sender, payload)
        elif own:
            plan = self._plan_for(sender)
        return send(self, plan, sender, payload)

    def gather(self, /, *args: P.args, **payload: P.kwargs) -> Coroutine[Any, Any, Responses]:
        """Run the receivers concurrently; responses in connection order.

        Structured: the first failure cancels the other receivers and raises an
        ``ExceptionGroup``; when ``gather`` returns or raises, no receiver is still running.

        Example:
            ```python
            results = await order_paid.gather(Shop, order=order)
            ```
        """
        return self._start(2, args, payload)

    def gather_robust(
        self, /, *args: P.args, **payload: P.kwargs
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
        return self._start(3, args, payload)

    def send_sync(self, /, *args: P.args, **payload: P.kwargs) -> Responses:
        """`send` for sync code: a ``def`` endpoint, a script, a sync ORM session, a task.

        Same arguments, return value and errors as ``await send(...)``; where the
        receivers run depends on the calling thread:

        * In a worker thread started by anyio (``anyio.to_thread.run_sync``, and so
          Starlette's and FastAPI's threadpool for ``def`` endpoints): the send runs on the
          event loop that started the thread, exactly as an awaited send would, and this
          call blocks until it is done.
        * In a thread with no event loop (a script, a management command): sync receivers
          are called right here, with no event loop at all; if a coroutine (or
          ``to_thread``) receiver is connected, the send runs to completion on an asyncio
          event loop kept for this thread.
        * In a thread that is running an event loop: sync receivers are called right here;
          a coroutine receiver raises `RuntimeError` before any receiver runs (this call
          cannot wait without blocking the loop): ``await signal.send(...)`` instead.

        Example:
            ```python
            @app.post("/orders")
            def create_order(order: Order):  # FastAPI runs it in a worker thread
                save(order)
                order_paid.send_sync(Shop, order=order)
            ```
        """
        return _sync.run(self, False, args, payload)

    def send_robust_sync(self, /, *args: P.args, **payload: P.kwargs) -> Responses:
        """`send_robust` for sync code, run where `send_sync` would run it.

        Example:
            ```python
            for receiver, response in order_paid.send_robust_sync(Shop, order=order):
                ...
            ```
        """
        return _sync.run(self, True, args, payload)

    # -- internals ----------------------------------------------------------------------

    def _start(
        self, mode: int, args: tuple[Any, ...], payload: dict[str, Any]
    ) -> Coroutine[Any, Any, Responses]:
        """gather (*mode* 2) and gather_robust (3): check the arguments, prepare the send,
        start the receivers' tasks."""
        if _get_running_loop() is None and not in_trio_run():
            raise _sync.no_event_loop(self, _MODES[mode])
        if len(args) == 1 and "sender" not in payload and "signal" not in payload:
            sender = args[0]
        else:
            sender = self._fix_send_arguments(args, payload)
        plan = prepare(self, sender, payload)
        if not plan:
            return (self._no_receiver_sends or self._first_no_receiver_sends())[mode]()
        coroutine = run_concurrently(
            self, tuple(payload), plan, sender, payload, mode == 3, self._max_concurrency
        )
        # A forgotten `await` then warns "coroutine 'order_paid.gather' was never awaited".
        names = self._coroutine_names or self._name_sends()
        coroutine.__qualname__ = names[mode]  # type: ignore[attr-defined]
        return coroutine

    def _first_no_receiver_sends(self) -> tuple[Callable[..., Coroutine[Any, Any, Responses]], ...]:
        self._name_sends()
        return self._no_receiver_sends

    def _prepare(self, sender: Any, payload: dict[str, Any]) -> tuple[Plan, Loop, Loop]:
        """Prepare a send (`asignals._dispatch.prepare`) and find the loops of send and
        send_robust for it, named after this signal (so that a forgotten ``await`` warns
        about ``order_paid.send``); keep them as the prepared send the next send reuses
        while they stay valid (`Connections._ready`).

        Reusing costs two comparisons, where building and hashing the payload's names cost
        a fifth of a one-receiver send (and a sender's own plan one lookup, while some
        sender has one). Valid while no send hook is installed and nothing changes (any
        change forgets it), for payloads of the same length:
        the loops check the names (see `asignals._loops`) and call `_forget_loops` when they
        differ. Not kept: the ``**`` loop (it takes any payload, so nothing would ever tell
        a payload of the same length that has a faster loop), and anything once a signal's
        sends have changed names under the same length `_MAX_MISSES` times.
        """
        version = self._version
        plan = prepare(self, sender, payload)
        any_plan, own = self._plans
        # With senders of their own, the plans differ by sender: loops for any plan kind.
        kind = tuple if own else kind_of(plan)
        send: Loop
        robust: Loop
        if plan or own:
            key = (tuple(payload), kind)
            send, robust = self._named_loops.get(key) or self._name_loops(*key)
        else:
            sends = self._no_receiver_sends or self._first_no_receiver_sends()
            send, robust = sends[0], sends[1]
        if (
            self._hook is None
            and not self._unsent  # (a send from a sender without receivers leaves them)
            and self._misses < _MAX_MISSES
            and not takes_any_payload(send)
        ):
            # `own` as it is now: a sender's plan stored into it later, before this signal
            # forgets the prepared send, must not be run with loops for another plan kind.
            self._ready = (any_plan, len(payload), send, robust, bool(own))
            if self._version != version:  # changed meanwhile (another thread): not valid
                self._ready = NOT_READY
        return plan, send, robust

    def _name_loops(self, shape: tuple[str, ...], kind: type) -> tuple[Loop, Loop]:
        if len(self._named_loops) >= _MAX_NAMED_LOOPS:  # names from user input: bounded
            self._named_loops.clear()
        names = self._coroutine_names or self._name_sends()
        loops = (
            _renamed(loop_for(shape, kind, robust=False, checked=True), names[0]),
            _renamed(loop_for(shape, kind, robust=True, checked=True), names[1]),
        )
        self._named_loops[shape, kind] = loops
        return loops

    def _forget_loops(self) -> None:
        """A send's payload had other names than the prepared send's loops: prepare again."""
        self._ready = NOT_READY
        self._misses += 1

    def _fix_send_arguments(self, args: tuple[Any, ...], named: dict[str, Any]) -> Any:
        """The sender of a send whose arguments are not simply ``(sender, **payload)``."""
        if len(args) > 1:
            raise TypeError(
                f"{self!r}: the payload of a send is keyword-only; got {len(args) - 1} extra "
                f"positional argument(s). Call send(sender, name=value, ...)"
            )
        if "signal" in named:
            raise TypeError(
                f"{self!r}: 'signal' is reserved (receivers get the signal as signal=...); "
                f"rename that payload item"
            )
        if "sender" not in named:
            return args[0] if args else None
        if args and args[0] is not None:  # a positional None counts as "not given"
            raise TypeError(
                f"{self!r}: the sender was given twice, positionally and as sender=...; pass "
                f"it once: send(sender, **payload)"
            )
        return named.pop("sender")

    # -- for subclasses (asignals.sqlalchemy's model signals) ------------------------------

    def _accept(self, receiver: Any, is_async: bool, to_thread: bool) -> None:
        """*receiver* passed `connect`'s checks and is about to be connected (or checked by
        `asignals._dispatch.check_receiver`): a subclass may raise to refuse it. By default
        the signal is now in use (`_in_use`)."""
        self._in_use()

    def _in_use(self) -> None:
        """A receiver is about to be connected, or a send hook installed: a subclass that
        has work to set up before its first send (listening to ORM events) does it here."""

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
            check_seconds(f"{self!r}.connect(): timeout", timeout)
            if not (is_async or to_thread):
                raise ValueError(
                    f"{self!r}.connect(): {describe(receiver)} is a sync receiver that runs "
                    f"inline on the event loop, where it cannot be interrupted, so it takes "
                    f"no timeout; pass to_thread=True as well, or make it a coroutine function"
                )
        return is_async


async def _no_receivers(
    signal: Any = None, plan: Any = None, sender: Any = None, payload: Any = None
) -> Responses:
    return []


_MODES = ("send", "send_robust", "gather", "gather_robust")
"""The four awaitable send methods, in the order of the signal's coroutine names."""


_MAX_NAMED_LOOPS = 64  # payload shapes x plan classes one signal keeps loops named for
_MAX_MISSES = 8


def _renamed(loop: Loop, name: str) -> Loop:
    """A copy of *loop* whose coroutines are called *name* (they take their function's)."""
    function = cast(FunctionType, loop)
    copy = FunctionType(function.__code__, function.__globals__, name, function.__defaults__)
    copy.__qualname__ = name
    return cast(Loop, copy)


def _origin(signal: AsyncSignal[...]) -> tuple[str, int]:
    """The module and line that created *signal* (past the constructors of subclasses)."""
    frame = sys._getframe(1)
    while (
        frame.f_back is not None
        and frame.f_code.co_name == "__init__"
        and (frame.f_locals.get("self") is signal)
    ):
        frame = frame.f_back
    return str(frame.f_globals.get("__name__", "?")), frame.f_lineno


def _as_list(signals: Any) -> list[Any]:
    try:
        return list(signals)
    except TypeError:
        return []


@overload
def receiver(
    signal: AsyncSignal[Q],
    *,
    sender: Any = None,
    weak: bool = True,
    dispatch_uid: Hashable | None = None,
    to_thread: bool = False,
    timeout: float | None = None,
    outbox: Any = None,
) -> Callable[[Callable[Q, T]], Callable[Q, T]]: ...


@overload
def receiver(
    signal: Iterable[AsyncSignal[...]],
    *,
    sender: Any = None,
    weak: bool = True,
    dispatch_uid: Hashable | None = None,
    to_thread: bool = False,
    timeout: float | None = None,
    outbox: Any = None,
) -> Callable[[R], R]: ...


def receiver(
    signal: Any,  # either of the above (pyright wants the implementation to take both)
    *,
    sender: Any = None,
    weak: bool = True,
    dispatch_uid: Hashable | None = None,
    to_thread: bool = False,
    timeout: float | None = None,
    outbox: Any = None,
) -> Callable[[R], R]:
    """Decorator connecting the function below it to one signal or to each of several.

    Takes every option of `AsyncSignal.connect` and returns the function unchanged. With
    one typed signal (`asignals.signal`), type checkers check the function's parameters
    against the signal's payload; with a list of signals they do not.

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

    # outbox= only when given: a subclass's connect() need not know of it.
    durable: dict[str, Any] = {} if outbox is None else {"outbox": outbox}

    def connect_to_all(func: R) -> R:
        for item in signals:
            item.connect(
                func,
                sender,
                weak=weak,
                dispatch_uid=dispatch_uid,
                to_thread=to_thread,
                timeout=timeout,
                **durable,
            )
        return func

    return connect_to_all
