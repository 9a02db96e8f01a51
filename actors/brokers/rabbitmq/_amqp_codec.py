"""AMQP 0-9-1 on the wire: frames, field tables, content properties, the methods we use.

Only what the worker's consumer connection sends and receives is here (see `_amqp_link`):
the connection and channel handshakes, ``basic.qos/consume/cancel/ack/nack/publish``,
deliveries, returns and publisher confirms. Parsing works on offsets into the receive buffer
with `struct`, so that a delivery costs a few unpacks rather than an object per frame.
"""

from __future__ import annotations

import datetime
import decimal
import struct
from dataclasses import dataclass
from typing import Any

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE
FRAME_OVERHEAD = 8  # type, channel, size + the end octet

# (class id, method id) of the methods we receive or send.
CONNECTION_START = (10, 10)
CONNECTION_START_OK = (10, 11)
CONNECTION_TUNE = (10, 30)
CONNECTION_TUNE_OK = (10, 31)
CONNECTION_OPEN = (10, 40)
CONNECTION_OPEN_OK = (10, 41)
CONNECTION_CLOSE = (10, 50)
CONNECTION_CLOSE_OK = (10, 51)
CONNECTION_BLOCKED = (10, 60)
CONNECTION_UNBLOCKED = (10, 61)
CHANNEL_OPEN = (20, 10)
CHANNEL_OPEN_OK = (20, 11)
CHANNEL_CLOSE = (20, 40)
CHANNEL_CLOSE_OK = (20, 41)
BASIC_QOS = (60, 10)
BASIC_QOS_OK = (60, 11)
BASIC_CONSUME = (60, 20)
BASIC_CONSUME_OK = (60, 21)
BASIC_CANCEL = (60, 30)
BASIC_CANCEL_OK = (60, 31)
BASIC_PUBLISH = (60, 40)
BASIC_RETURN = (60, 50)
BASIC_DELIVER = (60, 60)
BASIC_ACK = (60, 80)
BASIC_NACK = (60, 120)
CONFIRM_SELECT = (85, 10)
CONFIRM_SELECT_OK = (85, 11)

BASIC_CLASS = 60

_FRAME_HEAD = struct.Struct(">BHI")
_METHOD_ID = struct.Struct(">HH")
_CONTENT_HEAD = struct.Struct(">HHQ")
_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_DELIVERY_TAG_BITS = struct.Struct(">QB")


class ProtocolError(Exception):
    """The peer sent bytes that are not the AMQP we expect."""


# -- field tables ---------------------------------------------------------------------------------


# Fixed-size field values: type octet -> their struct.
_SCALARS = {
    ord("I"): struct.Struct(">i"),
    ord("l"): struct.Struct(">q"),
    ord("d"): struct.Struct(">d"),
    ord("f"): struct.Struct(">f"),
    ord("b"): struct.Struct(">b"),
    ord("B"): _U8,
    ord("s"): struct.Struct(">h"),
    ord("u"): _U16,
    ord("i"): _U32,
}


def _decode_value(buf: Any, pos: int) -> tuple[Any, int]:
    kind = buf[pos]
    pos += 1
    scalar = _SCALARS.get(kind)
    if scalar is not None:
        return scalar.unpack_from(buf, pos)[0], pos + scalar.size
    if kind == 0x74:  # 't' boolean
        return buf[pos] != 0, pos + 1
    if kind == 0x56:  # 'V' void
        return None, pos
    if kind == 0x54:  # 'T' timestamp
        (seconds,) = _U64.unpack_from(buf, pos)
        return datetime.datetime.fromtimestamp(seconds, datetime.UTC), pos + 8
    if kind == 0x44:  # 'D' decimal
        places = buf[pos]
        (value,) = struct.unpack_from(">i", buf, pos + 1)
        return decimal.Decimal(value).scaleb(-places), pos + 5
    (size,) = _U32.unpack_from(buf, pos)
    pos += 4
    end = pos + size
    if kind == 0x53:  # 'S' long string
        raw = bytes(buf[pos:end])
        try:
            return raw.decode(), end
        except UnicodeDecodeError:
            return raw, end
    if kind == 0x46:  # 'F' table
        return _table_from(buf, pos, end), end
    if kind == 0x41:  # 'A' array
        items = []
        while pos < end:
            item, pos = _decode_value(buf, pos)
            items.append(item)
        return items, end
    if kind == 0x78:  # 'x' byte array
        return bytes(buf[pos:end]), end
    raise ProtocolError(f"unknown field type {chr(kind)!r} in a field table")


def decode_table(buf: Any, pos: int, end: int) -> dict[str, Any]:
    """Decode the field table stored in ``buf[pos:end]``."""
    data = bytes(buf[pos:end])  # indexing and slicing bytes is the cheapest way through
    return _table_from(data, 0, len(data))


_KEYS: dict[bytes, str] = {}  # header names seen, decoded once
_KEYS_KEPT = 512


def _table_from(data: bytes, pos: int, end: int) -> dict[str, Any]:
    table: dict[str, Any] = {}
    keys = _KEYS
    length_at = _U32.unpack_from
    while pos < end:
        start = pos + 1
        pos = start + data[pos]
        raw_key = data[start:pos]
        key = keys.get(raw_key)
        if key is None:
            key = raw_key.decode()
            if len(keys) < _KEYS_KEPT:
                keys[raw_key] = key
        if data[pos] == 0x53:  # 'S', nearly every header of ours: inlined
            start = pos + 5
            pos = start + length_at(data, pos + 1)[0]
            raw = data[start:pos]
            try:
                table[key] = raw.decode()
            except UnicodeDecodeError:
                table[key] = raw
        else:
            table[key], pos = _decode_value(data, pos)
    return table


def _encode_value(value: Any, out: bytearray) -> None:
    if isinstance(value, str):
        raw = value.encode()
        out += b"S" + _U32.pack(len(raw)) + raw
    elif isinstance(value, bool):
        out += b"t\x01" if value else b"t\x00"
    elif isinstance(value, int):
        if -(2**31) <= value < 2**31:
            out += b"I" + struct.pack(">i", value)
        elif -(2**63) <= value < 2**63:
            out += b"l" + struct.pack(">q", value)
        else:
            raise ValueError(f"integer {value} does not fit an AMQP field (64 bits)")
    elif isinstance(value, float):
        out += b"d" + struct.pack(">d", value)
    elif value is None:
        out += b"V"
    else:
        _encode_other(value, out)


def _encode_other(value: Any, out: bytearray) -> None:
    if isinstance(value, bytes | bytearray):
        out += b"x" + _U32.pack(len(value)) + value
    elif isinstance(value, dict):
        out += b"F"
        _encode_sized(encode_table(value), out)
    elif isinstance(value, list | tuple):
        items = bytearray()
        for item in value:
            _encode_value(item, items)
        out += b"A"
        _encode_sized(bytes(items), out)
    elif isinstance(value, datetime.datetime):
        out += b"T" + _U64.pack(int(value.timestamp()))
    elif isinstance(value, decimal.Decimal):
        exponent = value.as_tuple().exponent
        places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        out += b"D" + _U8.pack(places) + struct.pack(">i", int(value.scaleb(places)))
    else:
        raise ValueError(f"{type(value).__name__} cannot travel in an AMQP field table")


def _encode_sized(data: bytes, out: bytearray) -> None:
    out += _U32.pack(len(data)) + data


_NAMES: dict[str, bytes] = {}  # field names seen, encoded once (every message has the same)


def encode_table(table: dict[str, Any] | None) -> bytes:
    """Encode `table` as an AMQP field table, without its length prefix."""
    out = bytearray()
    names = _NAMES
    for key, value in (table or {}).items():
        name = names.get(key)
        if name is None:
            name = shortstr(key)
            if len(names) < _KEYS_KEPT:
                names[key] = name
        out += name
        if type(value) is str:  # nearly every header of ours: inlined
            raw = value.encode()
            out += b"S" + _U32.pack(len(raw)) + raw
        else:
            _encode_value(value, out)
    return bytes(out)


def shortstr(text: str) -> bytes:
    """A short string: one length octet, then at most 255 bytes of UTF-8."""
    raw = text.encode()
    if len(raw) > 255:
        raise ValueError(f"AMQP short string longer than 255 bytes: {text[:40]!r}...")
    return _U8.pack(len(raw)) + raw


def longstr(data: bytes) -> bytes:
    """A long string: a 32-bit length, then the bytes."""
    return _U32.pack(len(data)) + data


def table(value: dict[str, Any] | None) -> bytes:
    """A field table with its 32-bit length prefix."""
    return longstr(encode_table(value))


def read_shortstr(buf: Any, pos: int) -> tuple[str, int]:
    """Read a short string at `pos`; return it and the position after it."""
    end = pos + 1 + buf[pos]
    return str(buf[pos + 1 : end], "utf-8"), end


# -- content properties ---------------------------------------------------------------------------


@dataclass(slots=True)
class Properties:
    """The content properties of a message that the consumer reads or sets."""

    content_type: str | None = None
    headers: dict[str, Any] | None = None
    delivery_mode: int | None = None
    priority: int | None = None
    message_id: str | None = None


# Property flag bits, in the order the properties travel.
_SHORTSTR, _TABLE, _OCTET, _U64_FIELD = 0, 1, 2, 3
_PROPERTY_LAYOUT = (
    (15, "content_type", _SHORTSTR),
    (14, "content_encoding", _SHORTSTR),
    (13, "headers", _TABLE),
    (12, "delivery_mode", _OCTET),
    (11, "priority", _OCTET),
    (10, "correlation_id", _SHORTSTR),
    (9, "reply_to", _SHORTSTR),
    (8, "expiration", _SHORTSTR),
    (7, "message_id", _SHORTSTR),
    (6, "timestamp", _U64_FIELD),
    (5, "type", _SHORTSTR),
    (4, "user_id", _SHORTSTR),
    (3, "app_id", _SHORTSTR),
    (2, "cluster_id", _SHORTSTR),
)
_KEPT = frozenset(("content_type", "headers", "delivery_mode", "priority", "message_id"))


_PLANS: dict[int, tuple[tuple[str | None, int], ...]] = {}


def _plan(flags: int) -> tuple[tuple[str | None, int], ...]:
    """The (name, kind) of each property present under `flags`, in wire order (cached).

    The name is None for a property that `Properties` does not keep: it is skipped, not decoded.
    """
    plan = _PLANS.get(flags)
    if plan is None:
        plan = _PLANS[flags] = tuple(
            (name if name in _KEPT else None, kind)
            for bit, name, kind in _PROPERTY_LAYOUT
            if flags & (1 << bit)
        )
    return plan


def decode_properties(buf: Any, pos: int, end: int) -> Properties:
    """Decode a content header's property flags and list (``buf[pos:end]``)."""
    data = bytes(buf[pos:end])
    pos = 2
    kept: dict[str, Any] = {}
    for name, kind in _plan(data[0] << 8 | data[1]):
        if kind == _SHORTSTR:
            start = pos + 1
            pos = start + data[pos]
            if name is not None:
                kept[name] = data[start:pos].decode()
        elif kind == _TABLE:
            start = pos + 4
            pos = start + _U32.unpack_from(data, pos)[0]
            if name is not None:
                kept[name] = _table_from(data, start, pos)
        elif kind == _OCTET:
            if name is not None:
                kept[name] = data[pos]
            pos += 1
        else:
            pos += 8
    if pos > len(data):
        raise ProtocolError("content header properties run past their frame")
    return Properties(**kept)


def encode_properties(props: Properties) -> bytes:
    """Encode the property flags and list of `props`."""
    flags = 0
    parts: list[bytes] = []
    if props.content_type is not None:
        flags |= 1 << 15
        parts.append(shortstr(props.content_type))
    if props.headers is not None:
        flags |= 1 << 13
        parts.append(table(props.headers))
    if props.delivery_mode is not None:
        flags |= 1 << 12
        parts.append(_U8.pack(props.delivery_mode))
    if props.priority is not None:
        flags |= 1 << 11
        parts.append(_U8.pack(props.priority))
    if props.message_id is not None:
        flags |= 1 << 7
        parts.append(shortstr(props.message_id))
    return _U16.pack(flags) + b"".join(parts)


# -- frames ---------------------------------------------------------------------------------------


def frame(kind: int, channel: int, payload: bytes) -> bytes:
    """One frame: header, payload, end octet."""
    return _FRAME_HEAD.pack(kind, channel, len(payload)) + payload + b"\xce"


def method_frame(channel: int, method: tuple[int, int], args: bytes = b"") -> bytes:
    """A method frame for `method` with its encoded arguments."""
    return frame(FRAME_METHOD, channel, _METHOD_ID.pack(*method) + args)


HEARTBEAT_FRAME = frame(FRAME_HEARTBEAT, 0, b"")


def content_frames(channel: int, props: Properties, body: bytes, frame_max: int) -> bytes:
    """The content header frame and the body frames (split at `frame_max`) of a message."""
    return encoded_content_frames(
        channel, encode_properties(props), body, frame_max - FRAME_OVERHEAD
    )


def encoded_content_frames(channel: int, properties: bytes, body: bytes, body_max: int) -> bytes:
    """`content_frames` with the properties already encoded and body frames of `body_max`."""
    header = _CONTENT_HEAD.pack(BASIC_CLASS, 0, len(body)) + properties
    out = [frame(FRAME_HEADER, channel, header)]
    for start in range(0, len(body), body_max):
        out.append(frame(FRAME_BODY, channel, body[start : start + body_max]))
    return b"".join(out)


# Called for every frame: the structs' own bound methods, so that a read is no Python call.
#: ``read_frame_head(buf, pos)``: (type, channel, payload size) of the frame at `pos`.
read_frame_head = _FRAME_HEAD.unpack_from
#: ``read_method_id(buf, pos)``: (class id, method id) of the method frame payload at `pos`.
read_method_id = _METHOD_ID.unpack_from


def read_body_size(buf: Any, pos: int) -> int:
    """The body size announced by the content header payload at `pos`."""
    size: int = _CONTENT_HEAD.unpack_from(buf, pos)[2]
    return size


def read_deliver(buf: Any, pos: int) -> tuple[str, int, bool, int]:
    """Read ``basic.deliver`` arguments at `pos`: consumer tag, delivery tag, redelivered.

    Returns the position after the redelivered flag too (exchange and routing key follow).
    """
    consumer_tag, pos = read_shortstr(buf, pos)
    tag, bits = _DELIVERY_TAG_BITS.unpack_from(buf, pos)
    return consumer_tag, tag, bool(bits & 1), pos + 9


def read_ack(buf: Any, pos: int) -> tuple[int, bool, bool]:
    """Read ``basic.ack``/``basic.nack`` arguments: delivery tag, multiple, (n)ack requeue."""
    tag, bits = _DELIVERY_TAG_BITS.unpack_from(buf, pos)
    return tag, bool(bits & 1), bool(bits & 2)


def read_leading_confirms(data: bytes, channel: int) -> tuple[list[tuple[int, bool, bool]], int]:
    """Read the complete ``basic.ack``/``basic.nack`` frames of `channel` at the head of `data`.

    Returns (delivery tag, multiple, nacked) of each, and how many bytes they take; reading
    stops at the first frame that is anything else, or incomplete, or broken.
    """
    confirms: list[tuple[int, bool, bool]] = []
    size = len(data)
    pos = 0
    while size - pos > 7:
        kind, frame_channel, length = read_frame_head(data, pos)
        end = pos + 7 + length
        if end >= size or kind != FRAME_METHOD or frame_channel != channel:
            break
        method = read_method_id(data, pos + 7)
        if (method != BASIC_ACK and method != BASIC_NACK) or data[end] != FRAME_END:
            break
        tag, multiple, _ = read_ack(data, pos + 11)
        confirms.append((tag, multiple, method == BASIC_NACK))
        pos = end + 1
    return confirms, pos


def read_close(buf: Any, pos: int) -> tuple[int, str]:
    """Read the reply code and text of a ``connection.close`` or ``channel.close``."""
    (code,) = _U16.unpack_from(buf, pos)
    text, _ = read_shortstr(buf, pos + 2)
    return code, text


def read_return(buf: Any, pos: int) -> tuple[int, str, str, str]:
    """Read ``basic.return``: reply code, reply text, exchange, routing key."""
    (code,) = _U16.unpack_from(buf, pos)
    text, pos = read_shortstr(buf, pos + 2)
    exchange, pos = read_shortstr(buf, pos)
    routing_key, _ = read_shortstr(buf, pos)
    return code, text, exchange, routing_key


def read_tune(buf: Any, pos: int) -> tuple[int, int, int]:
    """Read ``connection.tune``: channel max, frame max, heartbeat."""
    return struct.unpack_from(">HIH", buf, pos)


# -- method arguments we send ---------------------------------------------------------------------


def start_ok(client_properties: dict[str, Any], user: str, password: str) -> bytes:
    """``connection.start-ok`` with PLAIN authentication."""
    response = b"\x00" + user.encode() + b"\x00" + password.encode()
    return table(client_properties) + shortstr("PLAIN") + longstr(response) + shortstr("en_US")


def tune_ok(channel_max: int, frame_max: int, heartbeat: int) -> bytes:
    """``connection.tune-ok`` with the negotiated limits."""
    return struct.pack(">HIH", channel_max, frame_max, heartbeat)


def connection_open(vhost: str) -> bytes:
    """``connection.open`` of `vhost`."""
    return shortstr(vhost) + b"\x00\x00"


def close_args(code: int, text: str) -> bytes:
    """``connection.close``/``channel.close`` arguments (no failing method)."""
    return _U16.pack(code) + shortstr(text[:255]) + b"\x00\x00\x00\x00"


def qos(prefetch_count: int) -> bytes:
    """``basic.qos`` for this channel (not global)."""
    return struct.pack(">IHB", 0, prefetch_count, 0)


def consume(queue: str, consumer_tag: str) -> bytes:
    """``basic.consume`` with manual acks."""
    return b"\x00\x00" + shortstr(queue) + shortstr(consumer_tag) + b"\x00" + table(None)


def cancel(consumer_tag: str) -> bytes:
    """``basic.cancel`` that expects a ``cancel-ok``."""
    return shortstr(consumer_tag) + b"\x00"


def ack(delivery_tag: int, multiple: bool) -> bytes:
    """``basic.ack`` arguments."""
    return _DELIVERY_TAG_BITS.pack(delivery_tag, 1 if multiple else 0)


# A whole basic.ack frame: header (type, channel, size 13), class/method, tag, bits, end.
_ACK_FRAME = struct.Struct(">BHIHHQBB")


def ack_frame(channel: int, delivery_tag: int, multiple: bool) -> bytes:
    """A complete ``basic.ack`` frame (the hot path: one pack, no joins)."""
    return _ACK_FRAME.pack(
        FRAME_METHOD, channel, 13, *BASIC_ACK, delivery_tag, 1 if multiple else 0, FRAME_END
    )


def nack(delivery_tag: int, requeue: bool) -> bytes:
    """``basic.nack`` arguments for one delivery."""
    return _DELIVERY_TAG_BITS.pack(delivery_tag, 2 if requeue else 0)


def publish(exchange: str, routing_key: str, mandatory: bool) -> bytes:
    """``basic.publish`` arguments."""
    bits = b"\x01" if mandatory else b"\x00"
    return b"\x00\x00" + shortstr(exchange) + shortstr(routing_key) + bits
