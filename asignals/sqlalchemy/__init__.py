"""Django's model signals for SQLAlchemy 2, delivered when the data is really committed.

``track()`` hooks the ORM's session events; the signals here then follow every ORM
``Session`` (an ``AsyncSession`` runs one underneath):

* `pre_save` / `pre_delete`: in the flush, before the SQL; changes a receiver makes to the
  instance are saved with it.
* `post_save` / `post_delete` / `m2m_changed` (``post_*`` actions): after the outermost
  transaction commits, before ``commit()`` returns; never on rollback.
* `post_bulk_insert` / `post_bulk_update` / `post_bulk_delete`: once per ORM-enabled
  INSERT, UPDATE or DELETE statement run through the session, after the outermost commit;
  never on rollback.
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

from .._extras import missing as _missing

try:
    # _flush and _delivery register their session event listeners with _tracking.
    from . import _bulk, _delivery, _flush  # noqa: F401
    from ._init import post_init as post_init
    from ._init import pre_init as pre_init
    from ._outbox._outbox import Outbox as Outbox
    from ._outbox._outbox import OutboxDeadLetter as OutboxDeadLetter
    from ._outbox._outbox import OutboxStatistics as OutboxStatistics
    from ._signals import m2m_changed as m2m_changed
    from ._signals import post_bulk_delete as post_bulk_delete
    from ._signals import post_bulk_insert as post_bulk_insert
    from ._signals import post_bulk_update as post_bulk_update
    from ._signals import post_delete as post_delete
    from ._signals import post_save as post_save
    from ._signals import pre_delete as pre_delete
    from ._signals import pre_save as pre_save
    from ._tracking import track as track
    from ._tracking import untrack as untrack
except ImportError as exc:  # pragma: no cover - exercised in a venv without SQLAlchemy
    if (exc.name or "").partition(".")[0] != "sqlalchemy":
        raise  # not SQLAlchemy's absence (or a version without what is imported): a bug
    raise _missing("asignals.sqlalchemy", "SQLAlchemy 2.0.59 or later", "sqlalchemy", exc) from exc

__all__ = [
    "Outbox",
    "OutboxDeadLetter",
    "OutboxStatistics",
    "m2m_changed",
    "post_bulk_delete",
    "post_bulk_insert",
    "post_bulk_update",
    "post_delete",
    "post_init",
    "post_save",
    "pre_delete",
    "pre_init",
    "pre_save",
    "track",
    "untrack",
]

# Show users `asignals.sqlalchemy.track`, not the private module it is defined in.
for _name in ("Outbox", "OutboxDeadLetter", "OutboxStatistics", "track", "untrack"):
    globals()[_name].__module__ = __name__
del _name
