"""Django's model signals for SQLAlchemy 2, delivered when the data is really committed.

``track()`` hooks the ORM's session events; the signals here then follow every ORM
``Session`` (an ``AsyncSession`` runs one underneath):

* `pre_save` / `pre_delete`: in the flush, before the SQL; changes a receiver makes to the
  instance are saved with it.
* `post_save` / `post_delete` / `m2m_changed` (``post_*`` actions): after the outermost
  transaction commits, before ``commit()`` returns; never on rollback.
* `pre_init` / `post_init`: inline from the constructor and on load (sync receivers only).

Example:
    ```python
    from asignals import receiver
    from asignals.sqlalchemy import post_save, track

    track()

    @receiver(post_save, sender=Order)
    async def notify_kitchen(sender, instance, created, **kwargs):
        if created:
            await kitchen.notify(instance.id, instance.item)
    ```
"""

from __future__ import annotations

import logging
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, TypeVar

import anyio.from_thread

from .. import _sync
from .._dispatch import Loop, Plan, loop_for
from .._dispatch import loops as _loops
from .._extras import missing
from .._receivers import SYNC as _SYNC
from .._receivers import describe, make_ref
from .._signal import AsyncSignal, SendHook
from ._frames import Changes, Frame, Saved

try:
    import sqlalchemy
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
    from sqlalchemy.orm import Mapper, Session, sessionmaker
    from sqlalchemy.orm.attributes import instance_state
    from sqlalchemy.orm.base import NO_VALUE, PassiveFlag
    from sqlalchemy.orm.interfaces import MANYTOONE
    from sqlalchemy.orm.session import SessionTransaction
    from sqlalchemy.orm.state import InstanceState
    from sqlalchemy.util.concurrency import await_, in_greenlet
except ImportError as exc:  # pragma: no cover - exercised in a venv without SQLAlchemy
    raise missing("asignals.sqlalchemy", "SQLAlchemy 2.1 or later", "sqlalchemy", exc) from exc

__all__ = [
    "m2m_changed",
    "post_delete",
    "post_init",
    "post_save",
    "pre_delete",
    "pre_init",
    "pre_save",
    "track",
    "untrack",
]

logger = logging.getLogger("asignals")
_R = TypeVar("_R", bound=Callable[..., Any])


# -- the signals ----------------------------------------------------------------------------


class _ModelSignal(AsyncSignal):
    """An `AsyncSignal` whose senders are mapped classes, or their dotted paths.

    ``connect(r, sender="shop.models.Order")`` works before ``shop.models`` is imported: the
    connection is made for the class itself as soon as a class of that module and name is
    mapped (or at once if it already is), so sends, which name the class, reach it.
    """

    def connect(
        self,
        receiver: _R,
        sender: Any = None,
        *,
        weak: bool = True,
        dispatch_uid: Hashable | None = None,
        to_thread: bool = False,
        timeout: float | None = None,
    ) -> _R:
        options = {
            "weak": weak,
            "dispatch_uid": dispatch_uid,
            "to_thread": to_thread,
            "timeout": timeout,
        }
        if type(sender) is str:
            mapped = _lazy.resolve(sender)
            if mapped is None:
                self._check_receiver(receiver, to_thread, timeout)  # fail now, not later
                _lazy.add(self, sender, receiver, options)
                return receiver
            sender = mapped
        return super().connect(receiver, sender, **options)  # type: ignore[arg-type]

    def disconnect(
        self,
        receiver: Any = None,
        sender: Any = None,
        *,
        dispatch_uid: Hashable | None = None,
    ) -> bool:
        if type(sender) is str:
            if _lazy.discard(self, sender, receiver, dispatch_uid):
                return True
            mapped = _lazy.resolve(sender)
            if mapped is None:
                return False
            sender = mapped
        return super().disconnect(receiver, sender, dispatch_uid=dispatch_uid)

    def _check_receiver(self, receiver: Any, to_thread: bool, timeout: float | None) -> bool:
        is_async = super()._check_receiver(receiver, to_thread, timeout)
        _start_listening(self)  # the first receiver of a session signal: its hooks are needed
        return is_async

    # `asignals.testing` installs its hook by assigning `_hook`: a capture() of a session
    # signal needs the session hooks as much as a receiver does.
    @property
    def _hook(self) -> SendHook | None:
        return self._send_hook

    @_hook.setter
    def _hook(self, hook: SendHook | None) -> None:  # pyright: ignore[reportIncompatibleVariableOverride]
        self._send_hook = hook
        if hook is not None:
            _start_listening(self)

    def _idle(self) -> bool:
        """Nothing is connected (for any sender) and no test is capturing: skip all work."""
        return not self._connections and self._hook is None

    def _wanted(self, sender: type) -> bool:
        return self.has_listeners(sender)


class _InitSignal(_ModelSignal):
    """`pre_init` / `post_init`: sent inline from constructors and loads, never awaited."""

    def _check_receiver(self, receiver: Any, to_thread: bool, timeout: float | None) -> bool:
        is_async = AsyncSignal._check_receiver(self, receiver, to_thread, timeout)
        if is_async or to_thread:
            what = "a coroutine receiver" if is_async else "connected with to_thread=True"
            raise TypeError(
                f"{self!r} is sent inline from the model's constructor and on every load, "
                f"where nothing can be awaited, but {describe(receiver)} is {what}; connect "
                f"a plain function (it may send an AsyncSignal of your own later)"
            )
        _install_init_hooks()
        return False

    def _send_inline(self, sender: Any, **payload: Any) -> None:
        """Run every (sync) receiver now, on this thread, whatever thread it is: ``send``
        without its check for a running event loop (a script or a sync session has none),
        from the plan and the compiled loop, as `_deliver` sends."""
        plan = self._plan_to_send(sender, payload)
        if plan:
            shape = tuple(payload)
            loop = _loops.get(shape) or loop_for(shape)
            _run_inline(loop(self, plan, False, sender, payload))


pre_save = _ModelSignal(
    "pre_save",
    doc="In the flush, before the INSERT or UPDATE; payload instance, created, "
    "update_fields, changes. Changes to the instance are saved.",
)
post_save = _ModelSignal(
    "post_save",
    doc="After the outermost commit, once per inserted or updated object; payload "
    "instance, created, update_fields, changes (merged over the transaction).",
)
pre_delete = _ModelSignal("pre_delete", doc="In the flush, before the DELETE; payload instance.")
post_delete = _ModelSignal(
    "post_delete", doc="After the outermost commit, once per deleted object; payload instance."
)
m2m_changed = _ModelSignal(
    "m2m_changed",
    doc="A many-to-many collection changed; payload instance, action ('pre_add', "
    "'pre_remove', 'pre_clear' in the flush; 'post_add', 'post_remove', 'post_clear' after "
    "the commit), attribute, model, pk_set.",
)
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

_FLUSH_SIGNALS = (pre_save, pre_delete, m2m_changed)
_COMMIT_SIGNALS = (post_save, post_delete, m2m_changed)


# -- lazy string senders ----------------------------------------------------------------------


class _LazySenders:
    """Connections made with a dotted path as sender, waiting for that class to be mapped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # path -> [(signal, receiver ref, options)], in connection order
        self._pending: dict[str, list[tuple[_ModelSignal, Callable[[], Any], dict[str, Any]]]] = {}
        self._warned: set[str] = set()
        self._listening = False

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
            if not self._listening:
                event.listen(Mapper, "after_mapper_constructed", self._on_mapped)
                event.listen(Mapper, "after_configured", self._on_configured)
                self._listening = True

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
            entries = self._pending.pop(path, None)
        for signal, ref, options in entries or ():
            receiver = ref()
            if receiver is not None:
                AsyncSignal.connect(signal, receiver, class_, **options)

    def _on_configured(self) -> None:
        with self._lock:
            unmatched = [path for path in self._pending if path not in self._warned]
            self._warned.update(unmatched)
        for path in unmatched:
            names = ", ".join(sorted({repr(s.name) for s, _, _ in self._pending.get(path, ())}))
            warnings.warn(
                f"asignals.sqlalchemy: receivers of {names} were connected with "
                f"sender={path!r}, but no mapped class has that module and name (mappers "
                f"are configured now); check the spelling: it is the class's "
                f"'module.QualName', as in 'shop.models.Order'",
                RuntimeWarning,
                stacklevel=2,
            )


def _is_mapped(cls: type) -> bool:
    return sqlalchemy.inspect(cls, raiseerr=False) is not None


_lazy = _LazySenders()


# -- tracking: which sessions send ------------------------------------------------------------

_Target = Any
"""What `track` accepts: a Session class, a sessionmaker, an async_sessionmaker, an
AsyncSession class (``None``: every Session)."""

_tracked: dict[int, tuple[_Target, type[Session], Callable[[], None]]] = {}
# id(target) -> (target, the Session class listened on, undo of any patch)
_track_lock = threading.Lock()


def track(target: _Target = None) -> None:
    """Make sessions send the model signals: every Session, or those of *target*.

    Idempotent: tracking the same target twice is tracking it once, and a session is never
    followed twice even when both its class and its sessionmaker are tracked.

    Args:
        target: ``None`` (every ``Session``, including those under each
            ``AsyncSession``), a ``Session`` subclass, a ``sessionmaker``, an
            ``async_sessionmaker`` or an ``AsyncSession`` subclass.

    Raises:
        TypeError: *target* is none of these.

    Example:
        ```python
        SessionLocal = async_sessionmaker(engine)
        track(SessionLocal)  # or track() for every session
        ```
    """
    with _track_lock:
        if id(target) in _tracked:
            return
        listened_class, undo = _session_class_of(target)
        _tracked[id(target)] = (target, listened_class, undo)
        _relisten()


def untrack(target: _Target = None) -> None:
    """Undo exactly what ``track(target)`` did (nothing if it is not tracked).

    Example:
        ```python
        track(SessionLocal)
        ...
        untrack(SessionLocal)  # e.g. at the end of a test
        ```
    """
    with _track_lock:
        found = _tracked.pop(id(target), None)
        if found is None:
            return
        found[2]()
        _relisten()


def _session_class_of(target: _Target) -> tuple[type[Session], Callable[[], None]]:
    """The Session class whose events follow *target*, and how to undo any patch made."""

    def nothing() -> None:
        pass

    if target is None:
        return Session, nothing
    if isinstance(target, sessionmaker):
        return target.class_, nothing
    if isinstance(target, type) and issubclass(target, Session):
        return target, nothing
    if isinstance(target, async_sessionmaker):
        # Its sessions use this sync class underneath: give the maker one of its own, so
        # that tracking it follows exactly its sessions.
        had = "sync_session_class" in target.kw
        previous = target.kw.get("sync_session_class", AsyncSession.sync_session_class)
        own = type(previous.__name__, (previous,), {"__module__": previous.__module__})
        target.kw["sync_session_class"] = own

        def restore_maker() -> None:
            if had:
                target.kw["sync_session_class"] = previous
            else:
                target.kw.pop("sync_session_class", None)

        return own, restore_maker
    if isinstance(target, type) and issubclass(target, AsyncSession):
        had_own = "sync_session_class" in vars(target)
        previous_class: type[Session] = target.sync_session_class
        own_class = type(
            previous_class.__name__, (previous_class,), {"__module__": previous_class.__module__}
        )
        target.sync_session_class = own_class

        def restore_class() -> None:
            if had_own:
                target.sync_session_class = previous_class
            else:
                del target.sync_session_class

        return own_class, restore_class
    raise TypeError(
        f"track() takes None (every Session), a Session subclass, a sessionmaker, an "
        f"async_sessionmaker or an AsyncSession subclass, got {target!r}"
    )


_SESSION_EVENTS: dict[str, Callable[..., None]] = {}
_FLUSH_EVENTS = frozenset({"before_flush"})  # where pre_save, pre_delete, pre_* m2m are sent
_COMMIT_EVENTS = frozenset(  # where post_save, post_delete, post_* m2m are recorded and sent
    {"after_flush", "before_commit", "after_commit", "after_transaction_end"}
)

_listening: frozenset[str] = frozenset()
"""The session events listened to: those of the session signals that have ever had a
receiver (or a capture). Until then tracked sessions are not listened to at all, so a
commit costs exactly what it costs untracked; with receivers of post_save only, the flush
is not listened to either (SQLAlchemy re-reads the dirty objects after a before_flush
listener)."""
_listened: set[tuple[type[Session], str]] = set()


def _start_listening(signal: _ModelSignal) -> None:
    global _listening
    events = (_FLUSH_EVENTS if signal in _FLUSH_SIGNALS else frozenset()) | (
        _COMMIT_EVENTS if signal in _COMMIT_SIGNALS else frozenset()
    )
    if events <= _listening:
        return
    with _track_lock:
        _listening = _listening | events
        _relisten()


def _relisten() -> None:
    """Listen on each tracked class that has no tracked superclass, and on nothing else
    (SQLAlchemy would call a listener of a class and of its subclass twice)."""
    classes = {listened for _, listened, _ in _tracked.values()}
    roots = {c for c in classes if not any(c is not d and issubclass(c, d) for d in classes)}
    wanted = {(cls, name) for cls in roots for name in _listening}
    for cls, name in _listened - wanted:
        event.remove(cls, name, _SESSION_EVENTS[name])
    for cls, name in wanted - _listened:
        event.listen(cls, name, _SESSION_EVENTS[name])
    _listened.clear()
    _listened.update(wanted)


# -- what a mapped class looks like to us (computed once per mapper) --------------------------


class _Shape:
    __slots__ = ("columns", "many_to_many", "many_to_one")

    def __init__(self, mapper: Mapper[Any]) -> None:
        self.columns = frozenset(prop.key for prop in mapper.column_attrs)
        self.many_to_one = frozenset(
            rel.key for rel in mapper.relationships if rel.direction is MANYTOONE
        )
        self.many_to_many = tuple(
            (rel.key, rel.mapper.class_)
            for rel in mapper.relationships
            if rel.secondary is not None
        )


_shapes: weakref.WeakKeyDictionary[Mapper[Any], _Shape] = weakref.WeakKeyDictionary()


def _shape(state: InstanceState[Any]) -> _Shape:
    mapper = state.mapper
    found = _shapes.get(mapper)
    if found is None:
        found = _shapes[mapper] = _Shape(mapper)
    return found


def _changes(state: InstanceState[Any], shape: _Shape) -> Changes:
    """Column (and many-to-one) attributes changed since load or the last flush."""
    changes: Changes = {}
    committed = state.committed_state
    if not committed:
        return changes
    current = state.dict
    for key, old in committed.items():
        if key in shape.columns or key in shape.many_to_one:
            new = current.get(key)
            if old is NO_VALUE:
                old = None  # not loaded before it was set: unknown, reported as None
            elif old is new or old == new:
                continue
            changes[key] = (old, new)
    return changes


def _primary_key(instance: Any) -> Any:
    state: InstanceState[Any] = instance_state(instance)
    key = state.mapper.primary_key_from_instance(instance)
    return key[0] if len(key) == 1 else tuple(key)


def _m2m_history(state: InstanceState[Any], attribute: str) -> tuple[list[Any], list[Any], bool]:
    """(added, removed, now empty) for a collection, as the coming or current flush sees it."""
    history = state.get_history(attribute, PassiveFlag.PASSIVE_NO_INITIALIZE)
    added = list(history.added or ())
    removed = list(history.deleted or ())
    return added, removed, not added and not history.unchanged


# -- the session event handlers ---------------------------------------------------------------

_INFO_KEY = "asignals.sqlalchemy.frames"
"""Where a session keeps its frames: ``session.info[_INFO_KEY]``, a dict from each open
SessionTransaction (the outermost one, and each savepoint) to what it changed. State that
lives and dies with the session; `_after_transaction_end` removes each entry."""


def _frames_of(session: Session) -> dict[SessionTransaction, Frame] | None:
    frames: dict[SessionTransaction, Frame] | None = session.info.get(_INFO_KEY)
    return frames


def _owner(transaction: SessionTransaction) -> SessionTransaction:
    """The savepoint or outermost transaction that commits or rolls back *transaction*."""
    while not transaction.nested and transaction.parent is not None:
        transaction = transaction.parent
    return transaction


def _current_owner(session: Session) -> SessionTransaction | None:
    return session.get_nested_transaction() or session.get_transaction()


def _before_flush(session: Session, flush_context: Any, instances: Any) -> None:
    if pre_save._idle() and pre_delete._idle() and m2m_changed._idle():
        return
    for instance in list(session.new):
        cls = type(instance)
        if pre_save._wanted(cls):
            _send_in_flush(
                pre_save, cls, instance=instance, created=True, update_fields=None, changes={}
            )
    for instance in list(session.dirty):
        cls = type(instance)
        if pre_save._wanted(cls):
            state: InstanceState[Any] = instance_state(instance)
            changes = _changes(state, _shape(state))
            if changes:
                _send_in_flush(
                    pre_save,
                    cls,
                    instance=instance,
                    created=False,
                    update_fields=frozenset(changes),
                    changes=changes,
                )
    for instance in list(session.deleted):
        cls = type(instance)
        if pre_delete._wanted(cls):
            _send_in_flush(pre_delete, cls, instance=instance)
    if not m2m_changed._idle():
        for instance in [*session.new, *session.dirty]:
            _m2m_in_flush(instance)


def _m2m_in_flush(instance: Any) -> None:
    cls = type(instance)
    if not m2m_changed._wanted(cls):
        return
    state: InstanceState[Any] = instance_state(instance)
    for attribute, model in _shape(state).many_to_many:
        added, removed, emptied = _m2m_history(state, attribute)
        known = [_known_key(o) for o in removed]
        if removed:
            action = "pre_clear" if emptied else "pre_remove"
            keys = frozenset(k for k in known if k is not None)
            _send_in_flush(
                m2m_changed,
                cls,
                instance=instance,
                action=action,
                attribute=attribute,
                model=model,
                pk_set=keys,
            )
        if added:
            keys = frozenset(k for o in added if (k := _known_key(o)) is not None)
            _send_in_flush(
                m2m_changed,
                cls,
                instance=instance,
                action="pre_add",
                attribute=attribute,
                model=model,
                pk_set=keys,
            )


def _known_key(instance: Any) -> Any:
    """The primary key of an object already in the database (``None`` for a new one)."""
    identity = sqlalchemy.inspect(instance).identity
    if identity is None:
        return None
    return identity[0] if len(identity) == 1 else identity


def _after_flush(session: Session, flush_context: Any) -> None:
    if post_save._idle() and post_delete._idle() and m2m_changed._idle():
        return
    interest = _interest()
    frame: Frame | None = None  # what this flush wrote; only made for a class of interest
    # SQLAlchemy's own bookkeeping rather than session.new / .dirty / .deleted, which build
    # an IdentitySet of the objects on every call (a quarter of a microsecond per object).
    deleted = session._deleted
    for created, states in (
        (True, list(session._new) if session._new else ()),
        (False, [st for st in session.identity_map._modified if st not in deleted]),
    ):
        for state in states:
            saves, deletes, links, shape = interest.get(state.class_) or _interest_in(
                interest, state
            )
            wanted = saves or deletes  # a saved object deleted later in the transaction
            if not (wanted or links):
                continue
            instance = state.obj()
            if instance is None:  # pragma: no cover - collected while modified: nothing to send
                continue
            if frame is None:
                frame = Frame()
            if wanted:
                if created:
                    frame.saved(state, instance, True, {})
                else:
                    changes = _changes(state, shape)
                    if changes:
                        frame.saved(state, instance, False, changes)
            if links:
                _record_links(frame, state, instance, shape)
    for state, instance in list(deleted.items()) if deleted else ():
        saves, deletes, _, _ = interest.get(state.class_) or _interest_in(interest, state)
        if saves or deletes:
            if frame is None:
                frame = Frame()
            frame.deleted(state, instance)
    if frame is None or not frame.records:
        return  # nothing of interest was written: no bookkeeping at all for this commit
    owner = _current_owner(session)
    if owner is None:  # pragma: no cover - a flush always runs in a transaction
        return
    frames = _frames_of(session)
    if frames is None:
        frames = session.info[_INFO_KEY] = {}
    earlier = frames.get(owner)
    if earlier is None:
        frames[owner] = frame
    else:
        earlier.merge(frame)


_Interest = tuple[bool, bool, bool, _Shape]
"""Whether post_save, post_delete and m2m_changed (for its many-to-many links) have
receivers for a class, and the class's shape: what a flush records of its objects and what
a commit sends."""
_interests: tuple[tuple[int, ...], dict[type, _Interest]] = ((), {})


def _interest() -> dict[type, _Interest]:
    """What the commit signals want of each class, kept between flushes while no connection
    of theirs changed and none of them has a send hook.

    Asking ``has_listeners()`` of each class on every flush was most of what ``track()``
    added to a commit without receivers for the objects written. The table is replaced,
    never emptied, when something changed: a flush still filling the old one (in another
    thread) cannot leave an old answer in the new one.
    """
    global _interests
    if not (
        post_save._send_hook is None
        and post_delete._send_hook is None
        and m2m_changed._send_hook is None
    ):
        # A hook (a test's capture, a bridge) can change what it observes in place: ask
        # afresh on every flush and commit while one is installed.
        return {}
    version = (post_save._version, post_delete._version, m2m_changed._version)
    known, table = _interests
    if known != version:
        table = {}
        _interests = (version, table)
    return table


def _interest_in(table: dict[type, _Interest], state: InstanceState[Any]) -> _Interest:
    cls = state.class_
    shape = _shape(state)
    links = bool(shape.many_to_many) and m2m_changed._wanted(cls)
    found = table[cls] = (post_save._wanted(cls), post_delete._wanted(cls), links, shape)
    return found


def _record_links(frame: Frame, state: InstanceState[Any], instance: Any, shape: _Shape) -> None:
    for attribute, model in shape.many_to_many:
        added, removed, emptied = _m2m_history(state, attribute)
        if not (added or removed):
            continue
        linked = frame.linked(state, instance, attribute, model)
        for related in removed:
            linked.remove(_primary_key(related))
        for related in added:
            linked.add(_primary_key(related))
        if removed and emptied:
            linked.cleared = True


def _before_commit(session: Session) -> None:
    """Load what a rolled-back savepoint (or an explicit expire) expired on the objects
    about to be delivered, while SQL is still allowed: after the commit it is not, and the
    receivers must be able to read every column."""
    frames = _frames_of(session)
    if not frames or session.in_nested_transaction():
        return
    root = session.get_transaction()
    frame = frames.get(root) if root is not None else None
    if frame is None:
        return
    for key, record in list(frame.records.items()):
        if not isinstance(record, Saved) or record.deleted:
            continue
        state: InstanceState[Any] = key
        if not state.expired_attributes:
            continue
        expired = state.expired_attributes & _shape(state).columns
        if expired and state.session_id == session.hash_key:
            try:
                getattr(record.instance, next(iter(expired)))  # one SELECT loads them all
            except Exception as exc:  # e.g. the row was deleted meanwhile: deliver anyway
                logger.debug("asignals.sqlalchemy: could not reload %r: %s", record.instance, exc)


def _after_commit(session: Session) -> None:
    frames = _frames_of(session)
    if not frames:
        return
    nested = session.get_nested_transaction()
    if nested is not None:  # a savepoint was released: its frame joins the parent's at its end
        frame = frames.get(nested)
        if frame is not None:
            frame.committed = True
        return
    root = session.get_transaction()
    frame = frames.pop(root, None) if root is not None else None
    if frame is not None:
        _deliver(frame)


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    frames = _frames_of(session)
    if not frames:
        return
    frame = frames.pop(transaction, None)
    if frame is None or not (transaction.nested and frame.committed):
        return  # rolled back (or closed without a commit): deliver nothing
    parent = transaction.parent
    if parent is None:  # pragma: no cover - a savepoint always has a parent
        return
    owner = _owner(parent)
    into = frames.get(owner)
    if into is None:
        frames[owner] = frame
        frame.committed = False
    else:
        into.merge(frame)


_SESSION_EVENTS.update(
    before_flush=_before_flush,
    after_flush=_after_flush,
    before_commit=_before_commit,
    after_commit=_after_commit,
    after_transaction_end=_after_transaction_end,
)


# -- sending ----------------------------------------------------------------------------------


def _send_in_flush(signal: AsyncSignal, sender: type, **payload: Any) -> None:
    """Send a pre_* signal (not robust: a failing receiver fails the flush)."""
    if in_greenlet():  # an AsyncSession: await coroutine receivers through its bridge
        await_(signal.send(sender, **payload))
    else:
        signal.send_sync(sender, **payload)


Send = tuple["_ModelSignal", type, dict[str, Any]]


def _deliver(frame: Frame) -> None:
    """Send the post_* signals for a committed transaction; never raise into commit().

    Where the receivers run is decided once per commit:

    * when every receiver of these sends is a sync function (the common case, and the
      cheap one): they are called right here, in the thread that commits, as Django does;
    * otherwise under an AsyncSession (SQLAlchemy's greenlet bridge): every send is
      awaited on the session's event loop, all of them through one ``await_``;
    * otherwise in an anyio worker thread: all of them run on the event loop that started
      the thread, in one hop, while the thread waits (as ``send_robust_sync`` would);
    * otherwise (a script, or the event loop's own thread): ``send_robust_sync`` for the
      signals with coroutine receivers, inline calls for the others.

    Receivers' own exceptions are logged by ``send_robust``. What is caught here is a send
    that could not start (a coroutine receiver and a sync Session on the event loop's own
    thread): logged once per commit, with the number of sends it hit.
    """
    sends = _sends_of(frame)
    if not sends:
        return
    # Each (signal, class) pair's plan and compiled loop, looked up once: the deliveries of
    # one commit share one snapshot of the receivers, as the receivers of one send do.
    prepared: dict[tuple[_ModelSignal, type], tuple[Plan, Loop]] = {}
    for signal, sender, payload in sends:
        if (signal, sender) not in prepared:
            shape = tuple(payload)
            loop = _loops.get(shape) or loop_for(shape)
            prepared[(signal, sender)] = (signal._plan_for(sender), loop)
            signal._sending()  # the plans are taken (Connections._unsent)
    inline = {key: all(call is _SYNC for _, call in plan) for key, (plan, _) in prepared.items()}
    failed: list[tuple[Send, Exception]] = []
    try:
        if all(inline.values()):
            if any(signal._send_hook is not None for signal, _ in prepared):
                for signal, sender, payload in sends:
                    _send_inline(signal, sender, payload, prepared[(signal, sender)])
            else:  # the hot path: _send_inline, written out
                for signal, sender, payload in sends:
                    plan, loop = prepared[(signal, sender)]
                    if plan:
                        _run_inline(loop(signal, plan, True, sender, payload))
        elif in_greenlet():
            failed = await_(_send_all(sends))
        elif not _sync._thread_runs_event_loop() and _sync._in_anyio_worker_thread():
            failed = anyio.from_thread.run(_send_all, sends)
        else:
            for send in sends:
                signal, sender, payload = send
                try:
                    if inline[(signal, sender)]:
                        _send_inline(signal, sender, payload, prepared[(signal, sender)])
                    else:
                        signal.send_robust_sync(sender, **payload)
                except Exception as exc:
                    failed.append((send, exc))
    except Exception as exc:  # pragma: no cover - the bridge itself failed
        failed = [(sends[0], exc)]
    if failed:
        (signal, _, payload), error = failed[0]
        logger.error(
            "asignals.sqlalchemy: could not deliver %d model signal(s) after the commit, "
            "first %r for %r: %s: %s",
            len(failed),
            signal,
            payload.get("instance"),
            type(error).__name__,
            error,
            exc_info=error,
        )


async def _send_all(sends: list[Send]) -> list[tuple[Send, Exception]]:
    failed: list[tuple[Send, Exception]] = []
    for send in sends:
        signal, sender, payload = send
        try:
            await signal.send_robust(sender, **payload)
        except Exception as exc:  # pragma: no cover - send_robust catches receivers' errors
            failed.append((send, exc))
    return failed


def _send_inline(
    signal: _ModelSignal, sender: type, payload: dict[str, Any], prepared: tuple[Plan, Loop]
) -> None:
    """``send_robust`` to sync receivers only, called right here: what ``send_robust_sync``
    does for such a plan, without deciding again, for each object, which thread this is."""
    plan, loop = prepared
    if signal._hook is not None:  # asignals.testing sees (and may replace) every send
        plan = signal._plan_to_send(sender, payload)
    if plan:
        _run_inline(loop(signal, plan, True, sender, payload))


def _run_inline(coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run a send whose receivers are all sync: its coroutine finishes without suspending."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()  # pragma: no cover - only sync receivers are connected
    raise RuntimeError("a sync receiver's send suspended")  # pragma: no cover


def _sends_of(frame: Frame) -> list[Send]:
    """The post_* sends a committed frame makes, in order (classes without receivers skipped)."""
    sends: list[Send] = []
    interest = _interest()
    for record in frame.deliverable():
        instance = record.instance
        cls = type(instance)
        saves, deletes, links, _ = interest.get(cls) or _interest_in(
            interest, instance_state(instance)
        )
        if isinstance(record, Saved):
            if record.deleted:
                if deletes:
                    sends.append((post_delete, cls, {"instance": instance}))
            elif saves:
                payload = {
                    "instance": instance,
                    "created": record.created,
                    "update_fields": None if record.created else frozenset(record.changes),
                    "changes": record.changes,  # the record is dropped after delivery
                }
                sends.append((post_save, cls, payload))
            continue
        if not links:
            continue
        common = {"instance": instance, "attribute": record.attribute, "model": record.model}
        if record.removed:
            action = "post_clear" if record.cleared and not record.added else "post_remove"
            payload = {**common, "action": action, "pk_set": frozenset(record.removed)}
            sends.append((m2m_changed, cls, payload))
        if record.added:
            payload = {**common, "action": "post_add", "pk_set": frozenset(record.added)}
            sends.append((m2m_changed, cls, payload))
    return sends


# -- pre_init / post_init: mapper-wide instance events, installed on first connect ------------

_init_hooks_installed = False


def _install_init_hooks() -> None:
    global _init_hooks_installed
    if _init_hooks_installed:
        return
    event.listen(Mapper, "init", _on_init)
    event.listen(Mapper, "load", _on_load)
    _init_hooks_installed = True


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
