"""How the RabbitMQ consumer batches acks: the frames it writes for deliveries settled out of order.

The consumer is driven through its link-event API (`on_deliver`, `on_tick`) as its I/O thread
drives it, and the frames it writes are caught by a link stand-in and decoded with pika, so no
connection is needed.
"""

from __future__ import annotations

from collections.abc import Callable

import pika
import pika.frame
import pika.spec

from actors.brokers.rabbitmq import RabbitmqBroker
from actors.brokers.rabbitmq import _amqp_codec as wire
from actors.brokers.rabbitmq._consumer import RabbitmqConsumer, RabbitmqDelivery
from actors.delivery import Delivery
from tests.brokers import RABBITMQ_URL


class FrameRecorder:
    """Takes the place of the consumer's `AmqpLink` for writes: keeps the acks written."""

    def __init__(self) -> None:
        self.acks: list[tuple[int, bool]] = []
        self.nacked: list[int] = []
        self.while_nacking: Callable[[], None] = lambda: None

    def send_frames(self, data: bytes) -> None:
        while data:
            used, frame = pika.frame.decode_frame(data)
            assert isinstance(frame.method, pika.spec.Basic.Ack)
            self.acks.append((frame.method.delivery_tag, frame.method.multiple))
            data = data[used:]

    def send_method(self, method: tuple[int, int], args: bytes) -> None:
        assert method == wire.BASIC_NACK
        self.while_nacking()  # what another thread may do while this one writes
        self.nacked.append(wire.read_ack(args, 0)[0])


def _consumer_with(
    tags: int, prefetch: int
) -> tuple[RabbitmqConsumer, list[RabbitmqDelivery], FrameRecorder]:
    received: list[Delivery] = []
    consumer = RabbitmqConsumer(RabbitmqBroker(url=RABBITMQ_URL), ["q"], prefetch, received.append)
    recorder = FrameRecorder()
    consumer._link = recorder  # type: ignore[assignment]
    for tag in range(1, tags + 1):
        consumer.on_deliver("ctag", tag, False, wire.Properties(), b"")
    deliveries = [d for d in received if isinstance(d, RabbitmqDelivery)]
    assert [d.tag for d in deliveries] == list(range(1, tags + 1))
    return consumer, deliveries, recorder


def test_acks_of_newer_deliveries_wait_for_the_oldest_and_go_out_with_it_as_one_frame() -> None:
    _, deliveries, recorder = _consumer_with(4, prefetch=8)  # ack batch 2, hold 4
    first, second, third, fourth = deliveries
    third.ack()
    second.ack()
    assert recorder.acks == []  # both wait for the first, still in progress
    first.ack()
    assert recorder.acks == [(3, True)]
    fourth.ack()
    assert recorder.acks == [(3, True), (4, True)]  # nothing left in progress: sent at once


def test_held_acks_go_out_singly_at_the_tick_or_once_half_the_prefetch_waits() -> None:
    consumer, deliveries, recorder = _consumer_with(6, prefetch=6)  # ack batch 1, hold 3
    oldest = deliveries[0]
    deliveries[1].ack()
    assert recorder.acks == []
    consumer.on_tick()  # the I/O thread's tick does not let acks wait longer
    assert recorder.acks == [(2, False)]
    for delivery in deliveries[2:5]:
        delivery.ack()
    assert recorder.acks == [(2, False), (3, False), (4, False), (5, False)]
    oldest.ack()
    assert recorder.acks[-1] == (1, True)
    assert deliveries[5].tag not in [tag for tag, _ in recorder.acks]


def test_while_closing_no_ack_is_held() -> None:
    consumer, deliveries, recorder = _consumer_with(3, prefetch=8)
    consumer._closing = True  # close() sets it before its last flush
    deliveries[1].ack()
    deliveries[2].ack()
    assert recorder.acks == [(2, False), (3, False)]


def test_a_delivery_given_back_is_never_covered_by_a_multiple_ack_sent_meanwhile() -> None:
    consumer, deliveries, recorder = _consumer_with(2, prefetch=2)  # ack batch 1, hold 1
    first, second = deliveries
    # While the nack of the first is being written, another thread acks the second
    recorder.while_nacking = second.ack
    consumer._give_back(first)
    assert recorder.nacked == [1]
    assert (1, True) not in recorder.acks and (2, True) not in recorder.acks
    assert recorder.acks == [(2, False)]  # sent alone (the hold limit), or with the tick
