"""The operator's command line, ``python -m asignals.redis``: dead letters listed, requeued
or purged without the application's code.

Payloads are shown as they are on the wire (a registered type as ``{"$type": ..., "v":
...}``): the command knows none of the application's types or senders. With ``--secret``
it says whether each message's signature matches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from .. import _wire
from . import _dead_letters
from ._client import CONNECTION_ERRORS, close_quietly, connect, text
from ._routes import key_of

_ACTIONS = {
    "list": "show the dead letters (a table; --json for one JSON document)",
    "requeue": "deliver them again to their group only, and remove them (prints how many)",
    "purge": "delete them (prints how many)",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m asignals.redis",
        description="Operate a RedisBridge's Redis data without the application's code.",
        epilog="dead-letters {list,requeue,purge}: "
        + "; ".join(f"{action}: {what}" for action, what in _ACTIONS.items())
        + ". See `python -m asignals.redis dead-letters --help`.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dead = commands.add_parser(
        "dead-letters",
        help="list, requeue or purge a consumer group's dead letters",
        description="List, requeue or purge the dead letters of one queued signal and "
        "consumer group. Actions: "
        + "; ".join(f"{action}: {what}" for action, what in _ACTIONS.items())
        + ".",
    )
    dead.add_argument("action", choices=list(_ACTIONS), help="list, requeue or purge")
    dead.add_argument("--url", default="redis://127.0.0.1:6379/0", help="a redis:// URL")
    dead.add_argument("--prefix", default="asignals", help="the bridge's prefix=")
    dead.add_argument("--signal", required=True, help="the signal's name")
    dead.add_argument("--group", required=True, help="the consumer group")
    dead.add_argument(
        "--ids", nargs="+", metavar="ID", help="dead-letter stream ids (default: all)"
    )
    dead.add_argument("--secret", help="check each message's signature with this secret")
    dead.add_argument("--json", action="store_true", help="print one JSON document")
    dead.add_argument("--count", type=int, default=100, help="list at most this many")
    dead.add_argument("--maxlen", type=int, default=100_000, help="requeue: the stream's maxlen")
    dead.add_argument("--timeout", type=float, default=5.0, help="seconds per command")
    dead.add_argument("--cluster", action="store_true", help="the bridge's cluster=True")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; the exit status (0, or 1 when Redis could not be reached)."""
    out = sys.stdout if out is None else out
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        _dead_letters.check_ids("--ids", args.ids)
    except ValueError as exc:
        parser.error(str(exc))
    if args.count < 1 or args.maxlen < 1 or not args.timeout > 0:
        parser.error("--count and --maxlen must be at least 1, --timeout positive")
    try:
        result = asyncio.run(_run(args))
    except CONNECTION_ERRORS as exc:
        print(f"error: Redis at {args.url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2), file=out)
    elif isinstance(result, list):
        print(_table(result), file=out)
    else:
        ((done, count),) = result.items()
        print(f"{done} {count} dead letter(s) of {args.signal!r} (group {args.group!r})", file=out)
    return 0


async def _run(args: argparse.Namespace) -> Any:
    client = connect(args.url, args.timeout, args.cluster)
    stream = key_of(args.prefix, "queue", args.signal, args.cluster)
    try:
        if args.action == "requeue":
            return {
                "requeued": await _dead_letters.requeue(
                    client, stream, args.group, args.ids, args.maxlen
                )
            }
        if args.action == "purge":
            return {"purged": await _dead_letters.purge(client, stream, args.group, args.ids)}
        dead = _dead_letters.dead_key(stream, args.group)
        entries = await _dead_letters.read(client, dead, args.count)
        if args.ids is not None:
            wanted = set(args.ids)
            entries = [entry for entry in entries if entry[0] in wanted]
        secret = None if args.secret is None else args.secret.encode()
        return [_letter(stream_id, fields, secret) for stream_id, fields in entries]
    finally:
        await close_quietly(client)


def _letter(stream_id: str, fields: dict[bytes, bytes], secret: bytes | None) -> dict[str, Any]:
    """One dead letter as the operator sees it: the message as it is on the wire."""
    body, verified = _wire.unseal(fields.get(b"m", b""), secret)
    try:
        envelope: Any = json.loads(body)
    except (ValueError, RecursionError):
        envelope = None
    if not isinstance(envelope, dict):
        envelope = {}
    return {
        "stream_id": stream_id,
        "id": envelope.get("id"),
        "original_id": text(fields.get(b"id", b"")),
        "error": text(fields.get(b"error", b"")),
        "deliveries": _integer(fields.get(b"deliveries")),
        "consumer": text(fields.get(b"consumer", b"")),
        "failed_at": text(fields.get(b"at", b"")),
        "signature_ok": verified,
        "origin": envelope.get("origin"),
        "sender": envelope.get("sender"),
        "payload": envelope.get("payload"),
    }


def _integer(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _table(letters: list[dict[str, Any]]) -> str:
    if not letters:
        return "no dead letters"
    columns = ("stream_id", "id", "deliveries", "error", "payload")
    rows = [
        [_cell(letter[column], 60 if column in ("error", "payload") else 32) for column in columns]
        for letter in letters
    ]
    header = [column.upper().replace("_", " ") for column in columns]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    )


def _cell(value: Any, width: int) -> str:
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    shown = " ".join(shown.split())  # one line
    return shown if len(shown) <= width else shown[: width - 1] + "…"
