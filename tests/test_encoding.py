"""The wire codec: round trips, safety limits on hostile bytes, signing."""

from __future__ import annotations

import msgpack
import pytest

import actors
from actors import names
from actors.brokers.memory import MemoryBroker
from actors.encoding import Codec, JsonEncoder
from actors.errors import DecodeError, EncodingError, MessageTooLarge
from actors.testing import running_worker, wait_until


def _message(**changes: object) -> actors.Message[object]:
    base = actors.Message(queue="q", actor="a", args=(1, "two", b"3", [4.5]), kwargs={"k": None})
    return base.copy(**changes)


@pytest.mark.parametrize("codec", [Codec(), Codec(JsonEncoder())], ids=["msgpack", "json"])
def test_round_trip_keeps_every_field(codec: Codec) -> None:
    message = _message(options={"max_retries": 2}, priority=7, retries=1)
    if isinstance(codec.encoder, JsonEncoder):
        message = message.copy(args=(1, "two", [4.5]))
    envelope = codec.pack(message)
    back = codec.unpack(envelope.body, envelope.headers)
    assert back == message.copy(args=tuple(list(a) if isinstance(a, tuple) else a
                                           for a in message.args))  # fmt: skip
    assert envelope.headers[names.HEADER_ACTOR] == "a"
    assert envelope.headers[names.HEADER_ENCODING] == codec.encoder.name


def test_unencodable_argument_is_named() -> None:
    with pytest.raises(EncodingError) as caught:
        Codec().pack(_message(args=(1, object())))
    assert caught.value.argument == "args[1]"
    assert "object" in str(caught.value)


def test_oversized_message_is_refused_both_ways() -> None:
    codec = Codec(max_message_size=100)
    with pytest.raises(MessageTooLarge):
        codec.pack(_message(args=("x" * 200,)))
    with pytest.raises(DecodeError, match="exceeds"):
        codec.unpack(b"\x90" * 101)


def test_depth_limit_is_enforced_before_user_code_sees_the_arguments() -> None:
    nested: list[object] = []
    for _ in range(40):
        nested = [nested]
    body = Codec(max_depth=100).pack(_message(args=(nested,))).body
    with pytest.raises(DecodeError, match="nest"):
        Codec(max_depth=32).unpack(body)


def test_extension_types_are_refused() -> None:
    body = msgpack.packb({"v": 1, "id": "x", "queue": "q", "actor": "a",
                          "args": [msgpack.ExtType(1, b"")], "kwargs": {}})  # fmt: skip
    with pytest.raises(DecodeError, match="extension"):
        Codec().unpack(body)


def test_unknown_wire_version_is_refused() -> None:
    body = msgpack.packb({"v": 99, "id": "x", "queue": "q", "actor": "a", "args": [],
                          "kwargs": {}})  # fmt: skip
    with pytest.raises(DecodeError, match="version"):
        Codec().unpack(body)


def test_signed_messages_verify_and_tampering_is_detected() -> None:
    codec = Codec(signing_key="s3cret")
    envelope = codec.pack(_message())
    assert codec.unpack(envelope.body, envelope.headers).actor == "a"
    with pytest.raises(DecodeError, match="signature"):
        codec.unpack(envelope.body.replace(b"two", b"TWO"), envelope.headers)
    with pytest.raises(DecodeError, match="not signed"):
        codec.unpack(Codec().pack(_message()).body, {})
    with pytest.raises(DecodeError, match="signature"):
        Codec(signing_key="other").unpack(envelope.body, envelope.headers)


def test_worker_with_a_key_dead_letters_unsigned_messages() -> None:
    broker = actors.set_broker(MemoryBroker(codec=Codec(signing_key="k")))
    ran: list[int] = []

    @actors.actor
    def task(n: int) -> None:
        ran.append(n)

    unsigned = Codec().pack(task.message(1))
    with running_worker(broker, threads=1):
        broker.publish_raw("default", unsigned.body, unsigned.headers)
        task.send(2)
        wait_until(lambda: ran == [2], message="the signed message ran")
        letters = wait_until(lambda: broker.dead_letters("default"), message="a dead letter")
    assert letters[0].reason == "decode-error"
    assert ran == [2]
