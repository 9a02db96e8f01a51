"""How the consumer's AMQP link matches RabbitMQ's replies to the requests waiting for them.

The link writes its requests to one end of a socket pair and is fed the replies as RabbitMQ
frames, so no connection is needed.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pika
import pytest

from actors.brokers.rabbitmq import _amqp_codec as wire
from actors.brokers.rabbitmq._amqp_link import CHANNEL, AmqpLink, LinkClosed
from tests.brokers import RABBITMQ_URL


class NoEvents:
    """Link events that must not happen in these tests."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected link event {name}")


@pytest.fixture
def link() -> Iterator[AmqpLink]:
    ours, theirs = socket.socketpair()
    made = AmqpLink(pika.URLParameters(RABBITMQ_URL), NoEvents())
    made._sock = ours
    yield made
    ours.close()
    theirs.close()


def _reply(link: AmqpLink, method: tuple[int, int], args: bytes = b"") -> None:
    link._buf += wire.method_frame(CHANNEL, method, args)
    link._parse()


def test_a_qos_ok_that_overtakes_consumer_replies_goes_to_its_own_request(
    link: AmqpLink,
) -> None:
    # Given a new consumer, the cancel of the old one and a qos, sent in that order
    answered: list[str] = []
    link.request_async(
        wire.BASIC_CONSUME, wire.consume("q", "new"), wire.BASIC_CONSUME_OK,
        lambda: answered.append("consume new"), consumer_tag="new",
    )  # fmt: skip
    link.request_async(
        wire.BASIC_CANCEL, wire.cancel("old"), wire.BASIC_CANCEL_OK,
        lambda: answered.append("cancel old"), consumer_tag="old",
    )  # fmt: skip
    link.request_async(
        wire.BASIC_QOS, wire.qos(64), wire.BASIC_QOS_OK, lambda: answered.append("qos")
    )
    # When RabbitMQ's channel answers the qos before the queue's replies come through it
    _reply(link, wire.BASIC_QOS_OK)
    _reply(link, wire.BASIC_CANCEL_OK, wire.shortstr("old"))
    _reply(link, wire.BASIC_CONSUME_OK, wire.shortstr("new"))
    # Then each reply reaches the request it answers
    assert answered == ["qos", "cancel old", "consume new"]


def test_consumer_replies_of_several_queues_are_matched_by_tag(link: AmqpLink) -> None:
    answered: list[str] = []
    for tag in ("a", "b"):
        link.request_async(
            wire.BASIC_CANCEL, wire.cancel(tag), wire.BASIC_CANCEL_OK,
            lambda tag=tag: answered.append(tag), consumer_tag=tag,  # type: ignore[misc]
        )  # fmt: skip
    _reply(link, wire.BASIC_CANCEL_OK, wire.shortstr("b"))
    _reply(link, wire.BASIC_CANCEL_OK, wire.shortstr("a"))
    assert answered == ["b", "a"]


def test_a_reply_nothing_waits_for_is_a_protocol_error(link: AmqpLink) -> None:
    with pytest.raises(wire.ProtocolError, match="unexpected method"):
        _reply(link, wire.BASIC_QOS_OK)


def test_requesters_woken_at_close_may_send_again_meanwhile(link: AmqpLink) -> None:
    # Given a request whose requester, once woken by the close, sends another one at once
    woken: list[str] = []

    def wake_and_request_again() -> None:
        woken.append("first")
        # what a request_async from the woken thread adds before it finds the link closed
        link._waiting.append((wire.BASIC_QOS_OK, None, lambda: woken.append("second")))

    link.request_async(wire.BASIC_QOS, wire.qos(1), wire.BASIC_QOS_OK, wake_and_request_again)
    assert link._sock is not None
    link._sock.shutdown(socket.SHUT_RDWR)
    # When the connection closes, then every requester is woken and the reader ends cleanly
    with pytest.raises(LinkClosed):
        link.run()
    assert woken == ["first", "second"]
    with pytest.raises(LinkClosed):  # and a request on the closed link fails at once
        link.request_async(wire.BASIC_QOS, wire.qos(1), wire.BASIC_QOS_OK, lambda: None)


def test_a_callback_that_fails_while_reading_drops_the_link_not_the_reader(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a request whose callback fails (a bug), and RabbitMQ's reply on the socket
    ours, theirs = socket.socketpair()
    link = AmqpLink(pika.URLParameters(RABBITMQ_URL), NoEvents())
    link._sock = ours

    def broken() -> None:
        raise RuntimeError("bug in a callback")

    try:
        link.request_async(wire.BASIC_QOS, wire.qos(1), wire.BASIC_QOS_OK, broken)
        theirs.sendall(wire.method_frame(CHANNEL, wire.BASIC_QOS_OK, b""))
        # When a thread reads it, then the thread carries on (read_step returns), the link
        # is cut with the reason, and the failure is logged with its traceback
        link.read_step()
        assert link.closed
        assert link.closed_reason == "RuntimeError: bug in a callback"
        assert "dropping the connection" in caplog.text
    finally:
        ours.close()
        theirs.close()
