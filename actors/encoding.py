"""Turning messages into bytes and back (wire format v1, see docs/wire-format.md).

The body is a msgpack (or JSON) map; metadata that operators need is copied into readable
headers. Decoding treats the bytes as hostile: size, nesting depth and extension types are
limited, and with a signing key the HMAC is checked before the parser sees the body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import msgpack

from actors import names
from actors.errors import DecodeError, EncodingError, MessageTooLarge
from actors.message import Message

DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024
DEFAULT_MAX_DEPTH = 32

Headers = dict[str, str | int]


class Encoder(Protocol):
    """Turns a plain data tree (dicts, lists, str, bytes, numbers, None) into bytes and back."""

    name: str
    content_type: str

    def dumps(self, data: Any) -> bytes:
        """Encode `data`; raise TypeError/ValueError/OverflowError on what it cannot carry."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode `data`; raise on anything that is not a valid document."""
        ...


def _reject_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed")


class MsgpackEncoder:
    """msgpack, the default: compact and fast; extension types are refused."""

    name = "msgpack"
    content_type = "application/msgpack"

    def dumps(self, data: Any) -> bytes:
        return msgpack.packb(data, use_bin_type=True, datetime=False)  # type: ignore[no-any-return]

    def loads(self, data: bytes) -> Any:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_reject_ext)


class JsonEncoder:
    """JSON, for producers and operators that prefer text; bytes cannot be carried."""

    name = "json"
    content_type = "application/json"

    def dumps(self, data: Any) -> bytes:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


ENCODERS: dict[str, type[MsgpackEncoder] | type[JsonEncoder]] = {
    "msgpack": MsgpackEncoder,
    "json": JsonEncoder,
}


@dataclass(slots=True)
class Envelope:
    """An encoded message as handed to a broker: the body and its readable headers."""

    id: str
    queue: str
    actor: str
    priority: int
    body: bytes
    headers: Headers


_second_text: tuple[int, str] = (0, "1970-01-01T00:00:00")  # the last second formatted


def iso_time(timestamp: float) -> str:
    """Format Unix seconds as an ISO 8601 UTC time with milliseconds."""
    global _second_text
    # Microseconds rounded as `datetime.fromtimestamp` rounds them; the date and time of day
    # are formatted once per second (every message carries its enqueue time in a header).
    fraction, whole = math.modf(timestamp)
    micros = int(whole) * 1_000_000 + round(fraction * 1e6)
    second, millis = divmod(micros // 1000, 1000)
    cached = _second_text
    if cached[0] != second:
        text = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")[:-6]
        cached = _second_text = (second, text)
    return f"{cached[1]}.{millis:03d}+00:00"


def max_depth(tree: Any, limit: int) -> int:
    """Return the nesting depth of `tree`, stopping early once it exceeds `limit`.

    `tree` is decoded data (plain dicts and lists, as msgpack and json give them). A scalar
    is depth 1; a map or list is one more than its deepest item (1 if empty). Only
    containers are walked: every message is checked, and most items are scalars.
    """
    if type(tree) is not dict and type(tree) is not list:
        return 1
    deepest = 1
    stack: list[tuple[Any, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        items = node.values() if isinstance(node, dict) else node
        if not items:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        for item in items:
            if type(item) is dict or type(item) is list:
                stack.append((item, depth))
    return deepest


_FLOAT_EXACT = 2**53  # numbers in the body stay within what a float holds exactly

_REQUIRED_FIELDS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("id", str),
    ("queue", str),
    ("actor", str),
    ("args", list),
    ("kwargs", dict),
)


class Codec:
    """Encodes messages to envelopes and decodes bodies back, with the safety limits.

    Args:
        encoder: The body encoder (default msgpack).
        max_message_size: Largest body accepted, in bytes (default 4 MiB), both ways.
        max_depth: Deepest nesting of arguments accepted when decoding (default 32).
        signing_key: With a key, bodies are signed with HMAC-SHA256 and a body without a valid
            signature is refused before it is parsed.
    """

    def __init__(
        self,
        encoder: Encoder | None = None,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
        signing_key: bytes | str | None = None,
    ) -> None:
        self.encoder: Encoder = encoder or MsgpackEncoder()
        self.max_message_size = max_message_size
        self.max_depth = max_depth
        self._key = signing_key.encode() if isinstance(signing_key, str) else signing_key

    # -- encoding -------------------------------------------------------------------------------

    def pack(self, message: Message[Any]) -> Envelope:
        """Encode `message`.

        Raises:
            EncodingError: An argument or option cannot be encoded; the error names it.
            MessageTooLarge: The body exceeds ``max_message_size``.
        """
        data = {
            "v": names.WIRE_VERSION,
            "id": message.id,
            "queue": message.queue,
            "actor": message.actor,
            "args": message.args,
            "kwargs": message.kwargs,
            "options": message.options,
            "enqueued_at": message.enqueued_at,
            "priority": message.priority,
            "retries": message.retries,
        }
        try:
            body = self.encoder.dumps(data)
        except (TypeError, ValueError, OverflowError) as exc:
            raise self._explain_encoding_failure(message) from exc
        if len(body) > self.max_message_size:
            raise MessageTooLarge(len(body), self.max_message_size, message_id=message.id)
        return Envelope(
            message.id, message.queue, message.actor, message.priority, body,
            self.headers_for(message, body),
        )  # fmt: skip

    def headers_for(self, message: Message[Any], body: bytes) -> Headers:
        """Return the readable headers that travel with `message`'s body."""
        headers: Headers = {
            names.HEADER_ID: message.id,
            names.HEADER_ACTOR: message.actor,
            names.HEADER_QUEUE: message.queue,
            names.HEADER_RETRIES: message.retries,
            names.HEADER_ENQUEUED_AT: iso_time(message.enqueued_at),
            names.HEADER_ENCODING: self.encoder.name,
        }
        if self._key is not None:
            headers[names.HEADER_SIGNATURE] = self.sign(body)
        return headers

    def sign(self, body: bytes) -> str:
        """Return the hex HMAC-SHA256 of `body` under the signing key."""
        assert self._key is not None
        return hmac.new(self._key, body, hashlib.sha256).hexdigest()

    def _explain_encoding_failure(self, message: Message[Any]) -> EncodingError:
        named: list[tuple[str, Any]] = [(f"args[{i}]", v) for i, v in enumerate(message.args)]
        named += [(f"kwargs[{k!r}]", v) for k, v in message.kwargs.items()]
        named += [(f"options[{k!r}]", v) for k, v in message.options.items()]
        for argument, value in named:
            try:
                self.encoder.dumps(value)
            except (TypeError, ValueError, OverflowError) as exc:
                return EncodingError(
                    f"{message.actor}: {argument} of type {type(value).__name__} cannot be "
                    f"encoded with {self.encoder.name} ({exc})",
                    argument=argument,
                )
        return EncodingError(f"{message.actor}: the message cannot be encoded")

    # -- decoding -------------------------------------------------------------------------------

    def unpack(self, body: bytes, headers: Mapping[str, Any] | None = None) -> Message[Any]:
        """Decode a body taken from a broker.

        Raises:
            DecodeError: The body is too large, unsigned or tampered with (when a key is set),
                not a valid document, too deeply nested, or not a v1 message.
        """
        if len(body) > self.max_message_size:
            raise DecodeError(f"body of {len(body)} bytes exceeds {self.max_message_size}")
        if self._key is not None:
            self._verify(body, headers or {})
        encoding = (headers or {}).get(names.HEADER_ENCODING, self.encoder.name)
        encoder = self.encoder if encoding == self.encoder.name else _encoder_named(encoding)
        try:
            data = encoder.loads(body)
        except Exception as exc:
            raise DecodeError(f"body is not valid {encoding}: {type(exc).__name__}: {exc}") from exc
        return self._message_from(data)

    def _verify(self, body: bytes, headers: Mapping[str, Any]) -> None:
        signature = headers.get(names.HEADER_SIGNATURE)
        if not isinstance(signature, str | bytes):
            raise DecodeError("message is not signed and a signing key is set")
        if isinstance(signature, bytes):
            signature = signature.decode(errors="replace")
        if not hmac.compare_digest(signature, self.sign(body)):
            raise DecodeError(
                "message signature does not match: tampered or signed with another key"
            )

    def _message_from(self, data: Any) -> Message[Any]:
        if not isinstance(data, dict):
            raise DecodeError(f"body is a {type(data).__name__}, not a map")
        get = data.get
        if get("v") != names.WIRE_VERSION:
            raise DecodeError(f"unsupported wire version {get('v')!r}")
        id_, queue, actor = get("id"), get("queue"), get("actor")
        args, kwargs = get("args"), get("kwargs")
        if not (
            isinstance(id_, str)
            and isinstance(queue, str)
            and isinstance(actor, str)
            and isinstance(args, list)
            and isinstance(kwargs, dict)
        ):
            raise _field_error(data)
        if max_depth(data, self.max_depth + 2) > self.max_depth + 2:
            raise DecodeError(f"arguments nest deeper than {self.max_depth} levels")
        options = get("options") or {}
        if not isinstance(options, dict):
            raise DecodeError("field 'options' is not a map")
        return Message(
            queue=queue,
            actor=actor,
            args=tuple(args),
            kwargs=kwargs,
            options=options,
            id=id_,
            enqueued_at=_number(get("enqueued_at"), time.time()),
            priority=int(_number(get("priority"), 0)),
            retries=int(_number(get("retries"), 0)),
        )


def _number(value: Any, default: float) -> float:
    kind = type(value)
    if (kind is float or kind is int) and -_FLOAT_EXACT <= value <= _FLOAT_EXACT:
        return float(value)  # the common case; NaN and the infinities fail the comparison
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    if not math.isfinite(value) or abs(value) > _FLOAT_EXACT:
        raise DecodeError(f"number out of range: {value!r}")
    return float(value)


def _field_error(data: dict[Any, Any]) -> DecodeError:
    """The error for the first required field of `data` that is missing or of the wrong type."""
    return next(
        DecodeError(f"field {name!r} is missing or not a {_kind_name(kind)}")
        for name, kind in _REQUIRED_FIELDS
        if not isinstance(data.get(name), kind)
    )


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return {str: "string", list: "list", dict: "map"}.get(kind, str(kind))  # type: ignore[call-overload,no-any-return]


def _encoder_named(name: Any) -> Encoder:
    try:
        encoder: Encoder = ENCODERS[name]()
        return encoder
    except (KeyError, TypeError):
        raise DecodeError(f"unknown body encoding {name!r}") from None
