"""The bridge's wire format: a versioned JSON envelope, value codecs, HMAC signing.

Nothing here talks to Redis: `asignals.redis` moves the bytes this module makes and reads,
and `asignals.sqlalchemy.Outbox` stores payloads with the same codecs.

An envelope is one JSON object::

    {"v": 1, "id": "<hex>", "signal": "order_created", "sender": null,
     "payload": {...}, "origin": "<host>:<pid>:<hex>", "ts": 1767200000.25}

plus, when the send was traced, ``"trace": {"traceparent": "00-...", "tracestate": "..."}``
(the W3C trace context of the sender), which a reader that does not trace ignores.

``sender`` is ``null``, a JSON string or integer (a value sender), or ``{"$sender":
"<name>"}`` for an object registered with the bridge under that name. Payload values are
JSON values; a value of a registered type is ``{"$type": "<name>", "v": <json>}``, and a
dict that itself has a ``"$type"`` key (the payload itself included, when an item is named
``$type``) is escaped as ``{"$type": "dict", "v": [[key, value], ...]}``, so no user dict
is ever mistaken for a typed value.

Signed messages (``secret=``) are ``b"s1." + <64 hex digits of HMAC-SHA256 of the body> +
b"." + body``; unsigned ones are the body alone.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import hashlib
import hmac
import json
import math
import uuid
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from ._receivers import describe

VERSION: Final = 1
TYPE_TAG: Final = "$type"
SENDER_TAG: Final = "$sender"
_TAG_BYTES: Final = b'"$type"'
_SIGNED_PREFIX: Final = b"s1."
_DIGEST_LENGTH: Final = 64  # hex digits of SHA-256

DROP_KINDS: Final = (
    "oversized",
    "unsigned",
    "bad_signature",
    "malformed",
    "wrong_version",
    "unknown_signal",
    "unknown_sender",
    "unknown_type",
)
"""Why an incoming message can be dropped, as counted in `BridgeStatistics.dropped`."""


class Dropped(Exception):
    """An incoming message that must not reach a receiver, and why (one of DROP_KINDS)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class Unrepresentable(Exception):
    """A value JSON cannot carry; *what* describes it for the caller's TypeError."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class Envelope(NamedTuple):
    """A decoded incoming message (sender and payload not yet resolved)."""

    id: str
    signal: str
    sender: Any
    payload: dict[str, Any]
    origin: str
    timestamp: float
    typed: bool  # the body mentions "$type": the payload needs reviving
    trace: dict[str, str] | None = None  # the sender's trace context (W3C), when traced


class Codecs:
    """Types that payload values may have beyond JSON's own, each under a wire name."""

    def __init__(self) -> None:
        self._by_type: dict[type, tuple[str, Callable[[Any], Any]]] = {}
        self._by_name: dict[str, Callable[[Any], Any]] = {}
        self.register(datetime.datetime, "datetime", _isoformat, datetime.datetime.fromisoformat)
        self.register(datetime.date, "date", _isoformat, datetime.date.fromisoformat)
        self.register(uuid.UUID, "uuid", str, uuid.UUID)
        self.register(decimal.Decimal, "decimal", str, decimal.Decimal)

    def register(
        self,
        type_: type,
        name: str,
        encode: Callable[[Any], Any],
        decode: Callable[[Any], Any],
    ) -> None:
        if not isinstance(type_, type):
            raise TypeError(f"register_type() takes a class, got {type_!r}")
        if not isinstance(name, str) or not name or name == "dict":
            raise ValueError(
                f"register_type({type_.__qualname__}): name must be a non-empty "
                f"string other than 'dict', got {name!r}"
            )
        if not (callable(encode) and callable(decode)):
            raise TypeError(
                f"register_type({type_.__qualname__}): encode and decode must be callables"
            )
        taken = self._by_name.get(name)
        if taken is not None and self._by_type.get(type_, (None,))[0] != name:
            raise ValueError(
                f"register_type({type_.__qualname__}): the name {name!r} is already taken by "
                f"another type; choose another name"
            )
        self._by_type[type_] = (name, encode)
        self._by_name[name] = decode

    def register_decoder(self, name: str, decode: Callable[[Any], Any]) -> None:
        """Read values stored as ``{"$type": name, "v": ...}`` with *decode*: values whose
        encoding is chosen by their writer, not by their type (the outbox's enums and
        mapped objects)."""
        self._by_name[name] = decode

    def register_dataclass(self, cls: type, name: str) -> None:
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise TypeError(f"register_dataclass() takes a dataclass, got {cls!r}")
        init_fields = [f.name for f in dataclasses.fields(cls) if f.init]

        def encode(obj: Any) -> dict[str, Any]:
            return {field: getattr(obj, field) for field in init_fields}

        def decode(value: Any) -> Any:
            if not isinstance(value, dict):
                raise ValueError(f"{name}: expected an object")
            return cls(**value)

        self.register(cls, name, encode, decode)

    # -- encoding -----------------------------------------------------------------------

    def plain(self, value: Any) -> Any:
        """*value* as JSON-ready data; raises Unrepresentable."""
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            return value
        if kind is float:
            if not math.isfinite(value):
                raise Unrepresentable(f"the float {value!r} (JSON has no NaN or infinity)")
            return value
        if kind is list or kind is tuple:
            return [self.plain(item) for item in value]
        if kind is dict:
            out: dict[str, Any] = {}
            for key, item in value.items():
                if type(key) is not str:
                    raise Unrepresentable(f"a dict with the non-string key {key!r}")
                out[key] = self.plain(item)
            return escape(out)
        codec = self._by_type.get(kind)
        if codec is not None:
            name, encode = codec
            return {TYPE_TAG: name, "v": self.plain(encode(value))}
        raise Unrepresentable(f"a {kind.__module__}.{kind.__qualname__}")

    # -- decoding -----------------------------------------------------------------------

    def revive(self, value: Any) -> Any:
        """The inverse of `plain`; raises Dropped('unknown_type') for unknown type names."""
        if type(value) is list:
            return [self.revive(item) for item in value]
        if type(value) is not dict:
            return value
        if TYPE_TAG not in value:
            return {key: self.revive(item) for key, item in value.items()}
        name = value[TYPE_TAG]
        inner = value.get("v")
        if name == "dict" and isinstance(inner, list):
            return self._revive_pairs(inner)
        decode = self._by_name.get(name) if isinstance(name, str) else None
        if decode is None:
            raise Dropped("unknown_type", f"no type is registered under the name {name!r}")
        try:
            return decode(self.revive(inner))
        except Dropped:
            raise
        except Exception as exc:
            raise Dropped("unknown_type", f"decoding a {name!r} value failed: {exc!r}") from None

    def _revive_pairs(self, pairs: list[Any]) -> dict[str, Any]:
        """An escaped dict (see `escape`) from its ``[[key, value], ...]`` pairs."""
        out: dict[str, Any] = {}
        for pair in pairs:
            if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str:
                raise Dropped("malformed", "an escaped dict that is not a list of [str, value]")
            out[pair[0]] = self.revive(pair[1])
        return out


class Senders:
    """The senders that cross besides None, str and int, each under a registered name,
    as ``{"$sender": name}``."""

    def __init__(self) -> None:
        self._by_name: dict[str, Any] = {}
        self._by_id: dict[int, tuple[Any, str]] = {}

    def register(self, sender: Any, name: str) -> None:
        if sender is None or type(sender) in (str, int):
            raise ValueError(f"register_sender({sender!r}): None, str and int cross as they are")
        if not isinstance(name, str) or not name:
            raise TypeError(f"register_sender({describe(sender)}): name must be a string")
        known = self._by_name.get(name)
        if known is not None and known is not sender:
            raise ValueError(
                f"register_sender({describe(sender)}, {name!r}): the name is already taken by "
                f"{describe(known)}"
            )
        self._by_name[name] = sender
        self._by_id[id(sender)] = (sender, name)

    def plain(self, sender: Any) -> Any:
        """*sender* as JSON-ready data; raises Unrepresentable for an unregistered object."""
        if sender is None or type(sender) is str or type(sender) is int:
            return sender
        known = self._by_id.get(id(sender))
        if known is None or known[0] is not sender:
            raise Unrepresentable(describe(sender))
        return {SENDER_TAG: known[1]}

    def resolve(self, wire_sender: Any) -> Any:
        """The sender *wire_sender* names, from this registry; raises `Dropped`."""
        if wire_sender is None or type(wire_sender) in (str, int):
            return wire_sender
        if type(wire_sender) is dict and set(wire_sender) == {SENDER_TAG}:
            name = wire_sender[SENDER_TAG]
            if isinstance(name, str) and name in self._by_name:
                return self._by_name[name]
            raise Dropped("unknown_sender", f"no sender is registered as {name!r}")
        raise Dropped("malformed", "the sender is not null, a string, an int or a name")


def escape(plain: dict[str, Any]) -> dict[str, Any]:
    """*plain* (JSON-ready), escaped if one of its own keys is ``"$type"``, so that it is
    never taken for a typed value; `Codecs.revive` turns it back."""
    if TYPE_TAG in plain:
        return {TYPE_TAG: "dict", "v": [[key, item] for key, item in plain.items()]}
    return plain


def _isoformat(value: datetime.date) -> str:
    return value.isoformat()


# -- envelopes ------------------------------------------------------------------------------


# One encoder: json.dumps() with any non-default option builds a new one on every call.
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
# The C encoder JSONEncoder.encode builds on every call, built once. Without a check for
# cycles: what it encodes was made by `Codecs.plain`, which cannot make one.
_make_c_encoder: Any = getattr(json.encoder, "c_make_encoder", None)  # CPython's _json
_c_encode: Callable[[Any, int], Any] | None = (
    None
    if _make_c_encoder is None
    else _make_c_encoder(
        None, _encoder.default, json.encoder.encode_basestring, None, ":", ",", False, False,
        False,
    )
)  # fmt: skip


def dumps(value: Any) -> str:
    """*value* (JSON-ready) as compact JSON text, NaN and infinities refused."""
    if _c_encode is None:  # pragma: no cover - CPython has the C encoder
        return _encoder.encode(value)
    if type(value) is str:  # (the C encoder wants a container, as encode() gives it)
        return _encoder.encode(value)
    return "".join(_c_encode(value, 0))


# The C scanner, without decode()'s Python wrapper around it.
_scan: Callable[[str, int], tuple[Any, int]] = getattr(json.JSONDecoder(), "scan_once")  # noqa: B009


def seal(envelope: dict[str, Any], secret: bytes | None) -> bytes:
    """The wire bytes of a JSON-ready envelope (signed when there is a secret)."""
    data = dumps(envelope).encode()
    if secret is None:
        return data
    digest = hmac.new(secret, data, hashlib.sha256).hexdigest().encode()
    return _SIGNED_PREFIX + digest + b"." + data


def echo_mark(origin: str, secret: bytes | None) -> tuple[bytes, int]:
    """What every message sealed by the bridge *origin* holds at a fixed place: the bytes,
    and where they start (after the signature, when signed).

    `seal` writes ``v`` and ``origin`` first, so a fanout listener recognises its own
    messages coming back with one ``startswith``, before checking or parsing anything. A
    message from elsewhere carrying these bytes (a forgery) is skipped as well, which costs
    nothing: it could only have been dropped.
    """
    mark = _encoder.encode({"v": VERSION, "origin": origin})[:-1] + ","
    return mark.encode(), 0 if secret is None else len(_SIGNED_PREFIX) + _DIGEST_LENGTH + 1


def unseal(data: bytes, secret: bytes | None) -> tuple[bytes, bool | None]:
    """The body of wire bytes, and whether it is signed with *secret*: ``None`` when it is
    not signed, or there is no secret to check against (for showing a message, never for
    trusting one: `open_envelope` does that)."""
    start = len(_SIGNED_PREFIX)
    if not data.startswith(_SIGNED_PREFIX) or data[start + _DIGEST_LENGTH :][:1] != b".":
        return data, None
    body = data[start + _DIGEST_LENGTH + 1 :]
    if secret is None:
        return body, None
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
    return body, hmac.compare_digest(data[start : start + _DIGEST_LENGTH], expected)


def open_envelope(data: bytes, secret: bytes | None, max_bytes: int) -> Envelope:
    """Check and parse incoming wire bytes; raises Dropped with the reason."""
    if len(data) > max_bytes:
        raise Dropped("oversized", f"{len(data)} bytes, more than max_message_bytes={max_bytes}")
    if secret is not None:
        start = len(_SIGNED_PREFIX)
        if not data.startswith(_SIGNED_PREFIX) or data[start + _DIGEST_LENGTH :][:1] != b".":
            raise Dropped("unsigned", "the bridge has a secret and the message is not signed")
        digest = data[start : start + _DIGEST_LENGTH]
        body = data[start + _DIGEST_LENGTH + 1 :]
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(digest, expected):
            raise Dropped("bad_signature", "the signature does not match the message")
    else:
        body = data
    try:
        text = body.decode()
        envelope, end = _scan(text, 0)
    except (ValueError, UnicodeDecodeError, StopIteration):
        raise Dropped("malformed", "not a JSON document") from None
    except RecursionError:  # a document nested deeper than the parser goes
        raise Dropped("malformed", "a JSON document nested too deeply") from None
    if end != len(text) and text[end:].strip():
        raise Dropped("malformed", "data after the JSON document")
    if not isinstance(envelope, dict):
        raise Dropped("malformed", "not a JSON object")
    if envelope.get("v") != VERSION:
        raise Dropped("wrong_version", f"envelope version {envelope.get('v')!r}, not {VERSION}")
    try:
        fields = (
            envelope["id"],
            envelope["signal"],
            envelope["sender"],
            envelope["payload"],
            envelope["origin"],
            envelope["ts"],
        )
    except KeyError as missing:
        raise Dropped("malformed", f"the envelope has no {missing} field") from None
    id_, signal, sender, payload, origin, timestamp = fields
    if not (
        isinstance(id_, str)
        and isinstance(signal, str)
        and isinstance(payload, dict)
        and isinstance(origin, str)
        and isinstance(timestamp, int | float)
    ):
        raise Dropped("malformed", "an envelope field has the wrong type")
    try:
        timestamp = float(timestamp)
    except OverflowError:  # an integer too large for a float
        raise Dropped("malformed", "the envelope's ts is out of range") from None
    trace = envelope.get("trace")
    if trace is not None and not (
        type(trace) is dict and all(type(v) is str for v in trace.values())
    ):
        trace = None  # not ours to judge: the message is delivered without its trace
    return Envelope(id_, signal, sender, payload, origin, timestamp, _TAG_BYTES in body, trace)


def envelope_of(data: bytes) -> dict[str, Any]:
    """The envelope of wire bytes made by `seal` (trusted: for the sender's own message,
    to seal it again with its ``"trace"``, never for an incoming one)."""
    body, _ = unseal(data, None)
    envelope: dict[str, Any] = json.loads(body)
    return envelope
