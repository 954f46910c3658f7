"""Dead letters: where a group's given-up messages are kept, and what an operator does with
them (read, requeue, purge).

A queued message moves to its group's dead-letter stream ``<stream>:dead:<group>`` when its
receivers failed ``max_deliveries`` times, or when it was dropped (a bad signature, an
unknown sender or type, a message that does not decode): nothing that reached a queue is
lost without a trace. Each entry keeps the message's bytes as they were on the wire.

`requeue` appends a dead letter to the signal's stream again, addressed to its group only
(the ``g`` field: the consumers of other groups acknowledge it without running anything),
with the same bytes and so the same envelope id; `purge` deletes dead letters. Both take
stream ids of the dead-letter stream, or ``None`` for all of them. Nothing here needs the
application: the bridge's methods and the operator's command line
(``python -m asignals.redis``) share these functions.
"""

from __future__ import annotations

import re
import time
from typing import Any, Final

from ._client import text

TARGET_FIELD: Final = b"g"
"""The field of a requeued entry naming the one group it is for."""

_PAGE: Final = 100
_STREAM_ID: Final = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


def check_ids(what: str, ids: Any) -> None:
    """Raise unless *ids* is ``None`` or a list of stream ids (``"1767200000000-0"``)."""
    if ids is None:
        return
    if isinstance(ids, str) or not isinstance(ids, list | tuple):
        raise TypeError(f"{what}: ids must be a list of DeadLetter.stream_id values or None")
    for stream_id in ids:
        if not isinstance(stream_id, str) or not _STREAM_ID.fullmatch(stream_id):
            raise ValueError(
                f"{what}: {stream_id!r} is not a stream id; pass DeadLetter.stream_id values "
                f"(like '1767200000000-0')"
            )


def dead_key(stream: str, group: str) -> str:
    """The dead-letter stream of *group* for the queued signal whose stream is *stream*."""
    return f"{stream}:dead:{group}"


def dead_fields(
    data: Any, stream_id: Any, error: str, deliveries: int, consumer: str
) -> dict[str, Any]:
    """The fields of a dead-letter entry for the message *data* (its wire bytes)."""
    return {
        "m": data if isinstance(data, bytes) else b"",
        "id": stream_id,
        "error": error,
        "deliveries": deliveries,
        "consumer": consumer,
        "at": repr(time.time()),
    }


async def read(client: Any, dead: str, count: int) -> list[tuple[str, dict[bytes, bytes]]]:
    """The oldest *count* entries of the dead-letter stream *dead*: (stream id, fields)."""
    entries = await client.xrange(dead, count=count)
    return [(text(stream_id), fields) for stream_id, fields in entries]


async def _select(
    client: Any, dead: str, ids: list[str] | None
) -> list[tuple[str, dict[bytes, bytes]]]:
    """The entries *ids* names (those that exist), or the first page of all of them."""
    if ids is None:
        return await read(client, dead, _PAGE)
    pipe = client.pipeline(transaction=False)
    for stream_id in ids:
        pipe.xrange(dead, min=stream_id, max=stream_id, count=1)
    found: list[tuple[str, dict[bytes, bytes]]] = []
    for entries in await pipe.execute():
        found.extend((text(stream_id), fields) for stream_id, fields in entries)
    return found


async def requeue(client: Any, stream: str, group: str, ids: list[str] | None, maxlen: int) -> int:
    """Append the dead letters *ids* (all when ``None``) of *group* to *stream* again, for
    *group* only, and delete them from the dead-letter stream; how many were requeued."""
    dead = dead_key(stream, group)
    done = 0
    # Bounded: each round moves every entry it read (or, for ids, all of them at once).
    for _ in range(1 + await client.xlen(dead) // _PAGE + 1):
        entries = await _select(client, dead, ids)
        if not entries:
            break
        pipe = client.pipeline(transaction=True)  # moved, never lost or doubled
        for stream_id, fields in entries:
            message = {"m": fields.get(b"m", b""), TARGET_FIELD: group}
            pipe.xadd(stream, message, maxlen=maxlen, approximate=True)
            pipe.xdel(dead, stream_id)
        await pipe.execute()
        done += len(entries)
        if ids is not None:
            break
    return done


async def purge(client: Any, stream: str, group: str, ids: list[str] | None) -> int:
    """Delete the dead letters *ids* (all when ``None``) of *group*; how many were deleted."""
    dead = dead_key(stream, group)
    if ids is None:
        pipe = client.pipeline(transaction=True)
        pipe.xlen(dead)
        pipe.delete(dead)
        length, _ = await pipe.execute()
        return int(length)
    if not ids:
        return 0
    return int(await client.xdel(dead, *ids))
