"""The consumer's AMQP codec agrees with pika's, byte for byte where it matters."""

from __future__ import annotations

import datetime
import decimal
from typing import Any

import pika.data
import pika.frame
import pika.spec
import pytest

from actors.brokers.rabbitmq import _amqp_codec as wire

TABLE: dict[str, Any] = {
    "text": "héllo",
    "small": 7,
    "negative": -42,
    "large": 2**40,
    "yes": True,
    "no": False,
    "nothing": None,
    "nested": {"inner": "x", "count": 3},
    "items": ["a", 1, {"k": "v"}],
    "when": datetime.datetime(2026, 11, 22, 10, 30, tzinfo=datetime.UTC),
    "price": decimal.Decimal("12.34"),
}


def pika_encoded_table(table: dict[str, Any]) -> bytes:
    pieces: list[bytes] = []
    pika.data.encode_table(pieces, table)
    return b"".join(pieces)


def test_tables_we_encode_decode_with_pika() -> None:
    encoded = wire.table(TABLE)
    decoded, _ = pika.data.decode_table(encoded, 0)
    assert decoded == TABLE


def test_floats_and_bytes_survive_our_own_round_trip() -> None:
    table = {"ratio": 0.25, "raw": b"\xff\x00"}
    encoded = wire.encode_table(table)
    assert wire.decode_table(encoded, 0, len(encoded)) == table


def test_a_long_string_that_is_not_utf8_stays_bytes() -> None:
    encoded = b"\x01kS\x00\x00\x00\x02\xff\xfe"
    assert wire.decode_table(encoded, 0, len(encoded)) == {"k": b"\xff\xfe"}


def test_tables_pika_encodes_decode_with_ours() -> None:
    encoded = pika_encoded_table(TABLE)
    decoded = wire.decode_table(encoded, 4, len(encoded))
    assert decoded == TABLE


def test_a_value_no_table_can_carry_is_refused_with_its_type() -> None:
    with pytest.raises(ValueError, match="set cannot travel"):
        wire.table({"bad": {1, 2}})


def test_content_properties_both_ways() -> None:
    pika_props = pika.spec.BasicProperties(
        content_type="application/msgpack",
        headers={"actors-actor": "send_email", "actors-deliveries": 2},
        delivery_mode=2,
        priority=5,
        message_id="0193-abc",
        timestamp=1700000000,
        app_id="app",
    )
    raw = b"".join(pika_props.encode())
    ours = wire.decode_properties(raw, 0, len(raw))
    assert ours == wire.Properties(
        content_type="application/msgpack",
        headers={"actors-actor": "send_email", "actors-deliveries": 2},
        delivery_mode=2,
        priority=5,
        message_id="0193-abc",
    )
    back = pika.spec.BasicProperties()
    back.decode(wire.encode_properties(ours))
    assert back.content_type == "application/msgpack"
    assert back.headers == {"actors-actor": "send_email", "actors-deliveries": 2}
    assert (back.delivery_mode, back.priority, back.message_id) == (2, 5, "0193-abc")


def test_publish_frames_split_a_large_body_at_frame_max() -> None:
    body = bytes(range(256)) * 40  # 10,240 bytes
    data = wire.content_frames(1, wire.Properties(message_id="m"), body, frame_max=4096)
    frames = []
    while data:
        used, frame = pika.frame.decode_frame(data)
        frames.append(frame)
        data = data[used:]
    header, *bodies = frames
    assert isinstance(header, pika.frame.Header)
    assert header.body_size == len(body)
    assert header.properties.message_id == "m"
    assert all(len(f.fragment) <= 4096 - wire.FRAME_OVERHEAD for f in bodies)
    assert b"".join(f.fragment for f in bodies) == body


def test_ack_frames_decode_as_pika_methods() -> None:
    _, frame = pika.frame.decode_frame(
        wire.method_frame(1, wire.BASIC_ACK, wire.ack(12345678901, True))
    )
    assert isinstance(frame.method, pika.spec.Basic.Ack)
    assert (frame.method.delivery_tag, frame.method.multiple) == (12345678901, True)
    _, frame = pika.frame.decode_frame(
        wire.method_frame(1, wire.BASIC_NACK, wire.nack(9, requeue=True))
    )
    nack = frame.method
    assert isinstance(nack, pika.spec.Basic.Nack)
    assert (nack.delivery_tag, nack.requeue, nack.multiple) == (9, True, False)


def test_the_prebuilt_ack_frame_is_the_ack_method_frame() -> None:
    for tag, multiple in ((1, False), (2**40, True)):
        assert wire.ack_frame(1, tag, multiple) == wire.method_frame(
            1, wire.BASIC_ACK, wire.ack(tag, multiple)
        )


def test_deliver_arguments_read_from_pika_frames() -> None:
    method = pika.spec.Basic.Deliver("ctag", 77, True, "", "jobs")
    payload = b"".join(method.encode())
    consumer_tag, tag, redelivered, _ = wire.read_deliver(payload, 0)
    assert (consumer_tag, tag, redelivered) == ("ctag", 77, True)


def test_a_short_string_over_255_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than 255"):
        wire.shortstr("q" * 256)
