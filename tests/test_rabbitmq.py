"""RabbitMQ-specific behaviour: confirms, delays, DLQ headers, conflicts, quorum, poison, faults.

The broker-agnostic behaviour is in tests/contract. Faults that close connections or stop the
app run only against a private node (tests/support/private_rabbit.py), never the shared one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest

import actors
from actors import names, registry
from actors import worker as worker_module
from actors.broker import Consumer
from actors.brokers.rabbitmq import RabbitmqBroker
from actors.brokers.rabbitmq import _topology as topology
from actors.delivery import Delivery
from actors.errors import (
    ConfigurationError,
    ConnectionFailed,
    PublishError,
    QueueConflict,
    WorkerShutdown,
)
from actors.message import Message
from actors.middleware._interrupt import interrupt_thread
from actors.testing import running_worker, wait_until
from tests.brokers import RABBITMQ_URL
from tests.rabbitmq_support import open_rabbitmq_broker
from tests.support.deliveries import ack_as_they_come, first_args
from tests.support.private_rabbit import PrivateRabbit
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.rabbitmq

Cleanups = Callable[[Callable[[], object]], None]


@pytest.fixture
def broker(namespace: str, cleanups: Cleanups) -> RabbitmqBroker:
    made = open_rabbitmq_broker(namespace=namespace, cleanups=cleanups)
    registry.set_broker(made)
    return made


def _management(method: str, path: str, body: Any = None) -> Any:
    token = base64.b64encode(b"guest:guest").decode()
    request = urllib.request.Request(
        "http://127.0.0.1:15672" + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
    return json.loads(text) if text else None


def _raw_channel(cleanups: Cleanups, url: str = RABBITMQ_URL) -> Any:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    cleanups(connection.close)
    return connection.channel()


# -- publishing -----------------------------------------------------------------------------------


def _send_then_flush(broker: RabbitmqBroker, send: Callable[[], object]) -> None:
    send()
    broker.flush()


@pytest.mark.parametrize("wait", [True, False], ids=["wait_for_confirms", "streamed"])
def test_publish_nacked_by_a_full_queue_raises_publish_error(
    wait: bool, namespace: str, cleanups: Cleanups
) -> None:
    # Given a policy that makes the queue reject publishes beyond one message
    broker = open_rabbitmq_broker(namespace=namespace, cleanups=cleanups, wait_for_confirms=wait)
    registry.set_broker(broker)
    queue = f"{namespace}-full"
    policy = f"/api/policies/%2F/{namespace}"
    definition = {"max-length": 1, "overflow": "reject-publish"}
    _management("PUT", policy, {"pattern": f"^{queue}$", "definition": definition,
                                "apply-to": "queues"})  # fmt: skip
    cleanups(lambda: _management("DELETE", policy))

    @actors.actor(queue=queue)
    def task() -> None: ...

    # When two messages are sent, the second is nacked by RabbitMQ: the send raises when it
    # waits for its confirm, else the next flush does (naming the message)
    sent: list[Message[Any]] = []
    task.send()
    with pytest.raises(PublishError, match="nacked") as caught:
        _send_then_flush(broker, lambda: sent.append(task.send()))
    assert caught.value.message_id is not None
    if not wait:
        assert caught.value.message_id == sent[0].id
        broker.flush()  # reported once


@pytest.mark.parametrize("wait", [True, False], ids=["wait_for_confirms", "streamed"])
def test_publish_to_a_vanished_queue_is_unroutable(
    wait: bool, namespace: str, cleanups: Cleanups
) -> None:
    broker = open_rabbitmq_broker(namespace=namespace, cleanups=cleanups, wait_for_confirms=wait)
    registry.set_broker(broker)
    queue = f"{namespace}-gone"

    @actors.actor(queue=queue)
    def task() -> None: ...

    task.send()
    broker.flush()
    _raw_channel(cleanups).queue_delete(queue)  # behind the broker's back
    with pytest.raises(PublishError, match="unroutable"):
        _send_then_flush(broker, task.send)


def _sends_until_logged(
    send: Callable[[], object], caplog: pytest.LogCaptureFixture, text: str
) -> int:
    """Send until a later send() has read (and logged) RabbitMQ's refusal; return the count."""
    sent = 0

    def logged() -> bool:
        nonlocal sent
        send()
        sent += 1
        return text in caplog.text

    wait_until(logged, timeout=10, message=f"a send to log {text!r}")
    return sent


@pytest.mark.parametrize("refusal", ["nacked", "unroutable"])
def test_streamed_sends_read_the_refusals_that_came_back_before_any_flush(
    refusal: str, broker: RabbitmqBroker, namespace: str, cleanups: Cleanups,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    # Given a queue that takes one message and rejects the rest, or that is gone
    queue = f"{namespace}-{refusal}"

    @actors.actor(queue=queue)
    def task() -> None: ...

    task.send()
    broker.flush()
    if refusal == "nacked":
        policy = f"/api/policies/%2F/{namespace}"
        definition = {"max-length": 1, "overflow": "reject-publish"}
        _management("PUT", policy, {"pattern": f"^{queue}$", "definition": definition,
                                    "apply-to": "queues"})  # fmt: skip
        cleanups(lambda: _management("DELETE", policy))
        applied = f"/api/queues/%2F/{queue}"
        wait_until(lambda: _management("GET", applied).get("policy") == namespace,
                   message="the policy applied")  # fmt: skip
    else:
        _raw_channel(cleanups).queue_delete(queue)  # behind the broker's back
    # When more messages are streamed, later sends read the confirms (and returns) that came
    # back meanwhile: each refusal is logged then, and the next flush raises for them all
    caplog.set_level(logging.ERROR, logger="actors.brokers.rabbitmq")
    sent = _sends_until_logged(task.send, caplog, refusal)
    assert sent < 1000  # read while sending, not by waiting for the whole window
    with pytest.raises(PublishError, match=refusal):
        broker.flush()
    broker.flush()  # reported once


def test_streamed_sends_are_confirmed_by_flush_and_counted_at_once(
    broker: RabbitmqBroker, namespace: str
) -> None:
    queue = f"{namespace}-streamed"

    @actors.actor(queue=queue)
    def task(index: int) -> None: ...

    # send() returns before the confirm; flush waits for them all, and a queue count sees
    # every message sent before it even without a flush
    for index in range(50):
        task.send(index)
    assert broker.queue_depth(queue) == 50
    for index in range(50):
        task.send(index)
    broker.flush()
    assert broker._producer._streamed is False
    assert broker.queue_depth(queue) == 100


def test_enqueue_many_pipelines_confirms_for_every_message(
    broker: RabbitmqBroker, namespace: str
) -> None:
    queue = f"{namespace}-many"
    runs: list[int] = []

    @actors.actor(queue=queue)
    def task(number: int) -> None:
        runs.append(number)

    broker.enqueue_many([task.message(n) for n in range(300)])
    assert broker.queue_depth(queue) == 300
    with running_worker(broker, threads=4):
        broker.join(queue, timeout=30)
    assert sorted(runs) == list(range(300))


@pytest.mark.parametrize(
    "properties",
    [
        pika.BasicProperties(
            content_type="application/msgpack", delivery_mode=pika.DeliveryMode.Persistent,
            priority=9, message_id="m-1",
            headers={"text": "é", "zero": 0, "small": -5, "edge": 2**31 - 1, "low": -(2**31)},
        ),
        pika.BasicProperties(delivery_mode=2, headers={}),
        pika.BasicProperties(),
        # Types and properties the producer leaves to pika's own encoder.
        pika.BasicProperties(headers={"big": 2**40, "flag": True, "list": [1, "a"]}),
        pika.BasicProperties(content_type="text/plain", app_id="me", correlation_id="c"),
    ],
)  # fmt: skip
def test_publish_frames_are_the_bytes_pika_writes(properties: pika.BasicProperties) -> None:
    from pika import frame, spec

    from actors.brokers.rabbitmq._sync import Outgoing, add_content_frames, publish_method_frame

    for body in (b"", b"body", bytes(range(256)) * 40):  # the last one spans 3 body frames
        item = Outgoing("actors.delay.1", "jobs.é", body, properties)
        ours = [publish_method_frame(3, item.exchange, item.routing_key)]
        add_content_frames(ours, 3, item, 4096)
        method = spec.Basic.Publish(exchange=item.exchange, routing_key=item.routing_key,
                                    mandatory=True)  # fmt: skip
        pikas = [
            frame.Method(3, method).marshal(),
            frame.Header(3, len(body), properties).marshal(),
        ]
        pikas += [frame.Body(3, body[at : at + 4096]).marshal() for at in range(0, len(body), 4096)]
        assert b"".join(ours) == b"".join(pikas)


def test_the_producer_reads_leading_confirm_frames_itself_and_leaves_the_rest_to_pika(
    broker: RabbitmqBroker, cleanups: Cleanups
) -> None:
    from actors.brokers.rabbitmq import _amqp_codec as wire
    from actors.brokers.rabbitmq._sync import Link, Outgoing

    link = Link(broker.settings)
    cleanups(link.close)
    channel = link.channel.channel_number
    waiting = {tag: Outgoing("", "q", b"", pika.BasicProperties(message_id=f"m-{tag}"))
               for tag in (1, 2, 3)}  # fmt: skip
    link._unconfirmed.update(waiting)
    received = link._connection_impl.bytes_received
    confirms = wire.method_frame(channel, wire.BASIC_ACK, wire.ack(1, False)) + wire.method_frame(
        channel, wire.BASIC_NACK, wire.nack(2, requeue=False)
    )
    after = wire.HEARTBEAT_FRAME + wire.method_frame(channel, wire.BASIC_ACK, wire.ack(3, False))

    # The ack and the nack at the head are handled; pika gets the heartbeat and what follows
    assert link._take_confirms(confirms + after) == after
    assert list(link._unconfirmed) == [3]
    assert [(item.properties.message_id, why) for item, why in link.take_refused()] == [
        ("m-2", "nacked by RabbitMQ (queue full, or an internal error)")
    ]
    assert link._connection_impl.bytes_received == received + len(confirms)
    # A frame cut short is left whole for pika, which waits for the rest of it
    partial = wire.method_frame(channel, wire.BASIC_ACK, wire.ack(3, False))[:-3]
    assert link._take_confirms(partial) == partial
    assert list(link._unconfirmed) == [3]


def test_enqueue_many_of_large_messages_arrives_intact(
    broker: RabbitmqBroker, namespace: str, cleanups: Cleanups
) -> None:
    # Bodies larger than a frame, and batches larger than one socket write
    queue = f"{namespace}-large"

    @actors.actor(queue=queue)
    def task(number: int, blob: bytes) -> None: ...

    blobs = [bytes([n]) * (300_000 + n) for n in range(12)]
    broker.enqueue_many([task.message(n, blob) for n, blob in enumerate(blobs)])

    channel = _raw_channel(cleanups)
    received = []
    for _ in blobs:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        assert method is not None
        received.append(broker.codec.unpack(body, properties.headers).args)
    assert received == [(n, blob) for n, blob in enumerate(blobs)]


def test_sends_without_confirms_all_arrive(namespace: str, cleanups: Cleanups) -> None:
    unconfirmed = open_rabbitmq_broker(
        namespace=namespace, cleanups=cleanups, confirm_delivery=False
    )
    queue = f"{namespace}-unconfirmed"

    @actors.actor(queue=queue, broker=unconfirmed)
    def task(number: int) -> None: ...

    for number in range(500):
        task.send(number)
    unconfirmed.enqueue_many([task.message(n) for n in range(500)])
    wait_until(lambda: unconfirmed.queue_depth(queue) == 1000, timeout=10, message="1000 queued")


def test_send_async_publishes_with_confirms_and_delays(
    broker: RabbitmqBroker, namespace: str
) -> None:
    queue = f"{namespace}-async"
    runs: list[tuple[str, float]] = []

    @actors.actor(queue=queue)
    def task(label: str, sent_at: float) -> None:
        runs.append((label, time.time() - sent_at))

    async def produce() -> None:
        try:
            await task.send_async("now", time.time())
            await broker.enqueue_async(task.message("later", time.time()), delay=0.5)
        finally:
            await broker.close_async()

    asyncio.run(produce())
    with running_worker(broker, threads=2):
        wait_until(lambda: len(runs) == 2, message="both runs")
    later = dict(runs)["later"]
    assert 0.5 <= later <= 1.5


def test_producer_raises_connection_failed_when_nothing_listens(namespace: str) -> None:
    broker = RabbitmqBroker(url="amqp://guest:guest@127.0.0.1:1/", connect_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(ConnectionFailed, match=r"127\.0\.0\.1:1"):
        broker.declare_queue(f"{namespace}-q")
    assert time.monotonic() - started < 5
    broker.close()


def test_async_actor_blocking_its_loop_does_not_cost_the_connection(
    namespace: str, cleanups: Cleanups
) -> None:
    broker = open_rabbitmq_broker(namespace=namespace, cleanups=cleanups, heartbeat=1)
    registry.set_broker(broker)
    queue = f"{namespace}-blocking"
    runs: list[bool] = []

    @actors.actor(queue=queue)
    async def blocks() -> None:
        time.sleep(3.5)  # blocks the worker's event loop for more than 3 heartbeats
        runs.append(True)

    with running_worker(broker, threads=1):
        blocks.send()
        broker.join(queue, timeout=15)
        consumers = list(broker._consumers)
        assert consumers
        assert all(c._generation == 0 for c in consumers)  # the connection never dropped
    assert runs == [True]


# -- who reads the connection ----------------------------------------------------------------------


def test_an_idle_worker_thread_reads_and_runs_what_it_read(
    broker: RabbitmqBroker, namespace: str
) -> None:
    # Given a worker with idle threads
    queue = f"{namespace}-inline"
    ran_on: dict[int, str] = {}

    @actors.actor(queue=queue)
    def where(index: int) -> None:
        ran_on[index] = threading.current_thread().name

    worker = actors.Worker(broker, threads=4)
    read_on: dict[str, str] = {}
    intake = worker._on_delivery

    def record_intake(delivery: Delivery) -> None:
        read_on[str(delivery.headers.get(names.HEADER_ID))] = threading.current_thread().name
        intake(delivery)

    worker._on_delivery = record_intake  # type: ignore[method-assign]  # a spy on the intake
    worker.start()
    try:
        # When messages come one at a time (after the first, which the consumer's own thread
        # may read before it hands reading over to the idle worker threads)
        sent = []
        for index in range(21):
            sent.append(where.send(index))
            wait_until(lambda i=index: i in ran_on, message=f"message {index} ran")
    finally:
        worker.stop()
    # Then each was read by a worker thread, which ran it itself: no hand-off to another
    readers = [read_on[message.id] for message in sent[1:]]
    assert all(name.startswith("actors-worker-") for name in readers), readers
    assert [ran_on[index] for index in range(1, 21)] == readers


def _started_worker_spying_hand_ons(broker: RabbitmqBroker) -> tuple[actors.Worker, list[str]]:
    """Start a 4-thread worker with a spy on it waking an idle thread to read on: the worker
    threads that did, in order (the consumer's own thread also asks, after reading itself;
    those calls are left out)."""
    worker = actors.Worker(broker, threads=4)
    calls: list[str] = []
    hand_on = worker._hand_reading_on

    def record() -> bool:
        name = threading.current_thread().name
        if name.startswith("actors-worker-"):
            calls.append(name)
        return hand_on()

    worker._hand_reading_on = record  # type: ignore[method-assign]
    worker.start()
    return worker, calls


def _send_one_at_a_time(actor: Any, indexes: range, ran: list[int]) -> None:
    """Send `actor` each index in turn, waiting until it ran before sending the next."""
    for index in indexes:
        actor.send(index)
        wait_until(lambda i=index: i in ran, message=f"message {index} ran")


def test_a_thread_that_read_a_quick_actors_message_runs_it_without_waking_another_reader(
    broker: RabbitmqBroker, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an actor that finishes within the quick bound (raised, so that a loaded machine
    # cannot push a no-op over it), and a worker with idle threads
    monkeypatch.setattr(worker_module, "QUICK", 5.0)
    queue = f"{namespace}-quick"
    ran: list[int] = []

    @actors.actor(queue=queue)
    def tick(index: int) -> None:
        ran.append(index)

    worker, hand_ons = _started_worker_spying_hand_ons(broker)
    try:
        tick.send(0)  # its first run: how long the actor takes is not known yet
        wait_until(lambda: ran == [0], message="the first message ran")
        hand_ons.clear()
        # When more of its messages come one at a time
        _send_one_at_a_time(tick, range(1, 21), ran)
    finally:
        worker.stop()
    # Then every one ran, and no worker thread woke another to read meanwhile
    assert ran == list(range(21))
    assert hand_ons == []


def test_a_quick_actors_message_read_while_another_runs_still_wakes_another_reader(
    broker: RabbitmqBroker, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a quick actor (bound raised as above) and a worker with one thread held by another
    monkeypatch.setattr(worker_module, "QUICK", 5.0)
    queue = f"{namespace}-busy-quick"
    release = threading.Event()
    ran: list[int] = []

    @actors.actor(queue=queue)
    def hold() -> None:
        release.wait(20)

    @actors.actor(queue=queue)
    def tick(index: int) -> None:
        ran.append(index)

    worker, hand_ons = _started_worker_spying_hand_ons(broker)
    try:
        tick.send(0)
        wait_until(lambda: ran == [0], message="the first message ran")
        hold.send()
        wait_until(lambda: worker._in_flight == 1, message="a thread is held")
        hand_ons.clear()
        # When the quick actor's messages come one at a time meanwhile
        _send_one_at_a_time(tick, range(1, 9), ran)
    finally:
        release.set()
        worker.stop()
    # Then the threads that read them woke another to read on, as in a drain
    assert ran == list(range(9))
    assert len(hand_ons) >= 6, hand_ons


def test_a_thread_that_read_a_slow_actors_message_wakes_another_reader_first(
    broker: RabbitmqBroker, namespace: str
) -> None:
    # Given an actor that takes longer than the quick bound, and a worker with idle threads
    queue = f"{namespace}-slow"
    ran: list[int] = []

    @actors.actor(queue=queue)
    def nap(index: int) -> None:
        time.sleep(0.02)
        ran.append(index)

    worker, hand_ons = _started_worker_spying_hand_ons(broker)
    try:
        # When its messages come one at a time
        _send_one_at_a_time(nap, range(8), ran)
    finally:
        worker.stop()
    # Then the worker thread that read each one woke an idle thread to read on before running
    # it (all but the first or another that the consumer's own thread read after a stall)
    assert ran == list(range(8))
    assert len(hand_ons) >= 6, hand_ons


def test_with_every_worker_thread_busy_the_connection_is_still_read(
    broker: RabbitmqBroker, namespace: str
) -> None:
    # Given a worker whose only sync thread is held by an actor
    queue = f"{namespace}-busy"
    release = threading.Event()
    async_ran = threading.Event()

    @actors.actor(queue=queue)
    def hold() -> None:
        release.wait(20)

    @actors.actor(queue=queue)
    async def quick() -> None:
        async_ran.set()

    with running_worker(broker, threads=1) as worker:
        try:
            hold.send()
            wait_until(lambda: worker._in_flight == 1, message="the thread is held")
            # When more work arrives meanwhile, and a channel round trip is asked for
            quick.send()
            # Then the consumer's own thread reads it: the async actor runs, the reply comes
            assert async_ran.wait(5), "nothing read the async actor's message"
            consumer = next(iter(broker._consumers))
            started = time.monotonic()
            consumer.sync(timeout=5)
            assert time.monotonic() - started < 2
        finally:
            release.set()
        broker.join(queue, timeout=10)


def test_an_interrupt_that_lands_while_a_thread_reads_leaves_the_worker_running(
    broker: RabbitmqBroker, namespace: str
) -> None:
    # Given a worker whose only thread is reading the connection
    queue = f"{namespace}-late-interrupt"
    runs: list[int] = []

    @actors.actor(queue=queue)
    def task(n: int) -> None:
        runs.append(n)

    with running_worker(broker, threads=1) as worker:
        task.send(1)
        wait_until(lambda: runs == [1], message="the first message ran")
        consumer = next(iter(broker._consumers))
        [thread] = worker._threads
        wait_until(lambda: consumer._reader is thread, message="the thread reads")
        # When an interrupt meant for an actor that just finished lands there (a time limit
        # or shutdown notice that came late)
        interrupt_thread(thread.ident or 0, WorkerShutdown)
        task.send(2)
        # Then the thread goes on (the link it was reading is dropped and comes back)
        wait_until(lambda: runs == [1, 2], timeout=15, message="the second message ran")
        assert thread.is_alive()


# -- priorities and delays ------------------------------------------------------------------------


def test_backlog_drains_highest_priority_first(broker: RabbitmqBroker, namespace: str) -> None:
    queue = f"{namespace}-prio"
    order: list[int] = []

    @actors.actor(queue=queue)
    def task(priority: int) -> None:
        order.append(priority)

    for priority in (0, 3, 9, 1, 5, 9, 0):
        task.send_with_options(args=(priority,), priority=priority)
    with running_worker(broker, threads=1, prefetch=1):
        broker.join(queue, timeout=10)
    assert order == [9, 9, 5, 3, 1, 0, 0]


def test_delayed_messages_run_no_earlier_than_asked_and_within_a_second(
    broker: RabbitmqBroker, namespace: str
) -> None:
    queue = f"{namespace}-delay"
    late: dict[float, float] = {}

    @actors.actor(queue=queue)
    def task(delay: float, sent_at: float) -> None:
        late[delay] = time.time() - sent_at - delay

    delays = (0.05, 0.3, 1.0, 2.5)
    with running_worker(broker, threads=2):
        for delay in delays:
            task.send_with_options(args=(delay, time.time()), delay=delay)
        broker.join(queue, timeout=10)
    assert set(late) == set(delays)
    assert all(0 <= lateness <= 1.0 for lateness in late.values()), late


def test_delayed_message_survives_a_worker_restart_and_is_not_prefetched(
    broker: RabbitmqBroker, namespace: str
) -> None:
    queue = f"{namespace}-restart"
    runs: list[float] = []

    @actors.actor(queue=queue)
    def task() -> None:
        runs.append(time.time())

    sent_at = time.time()
    with running_worker(broker, threads=1):
        task.send_with_options(delay=1.5)
        # the message waits in the ladder, not in the queue nor in the worker's prefetch
        assert broker._ready(queue) == 0
        assert all(c.in_flight.get(queue, 0) == 0 for c in broker._consumers)
        assert broker.queue_depth(queue) == 1  # counted as delayed by the process that sent it
    assert runs == []
    with running_worker(broker, threads=1):
        wait_until(lambda: runs, timeout=10, message="the delayed run")
    assert runs[0] - sent_at >= 1.5


def test_delay_route_encodes_rounded_up_units_in_binary() -> None:
    exchange, key = topology.delay_route("jobs.high", 0.25)  # 3 units of 100 ms
    assert exchange == topology.delay_exchange(1)
    assert key == "0." * 30 + "1.1.jobs.high"
    assert topology.rounded_delay(0.25) == 0.3
    with pytest.raises(ConfigurationError, match="exceeds"):
        topology.delay_route("q", topology.MAX_DELAY + 1)


# -- dead letters ------------------------------------------------------------------------------


def test_dead_letter_headers_are_readable_in_the_management_api(
    broker: RabbitmqBroker, namespace: str
) -> None:
    queue = f"{namespace}-dlq"

    @actors.actor(queue=queue, max_retries=0)
    def explode() -> None:
        raise ValueError("x" * 5000)

    with running_worker(broker, threads=1):
        message = explode.send()
        wait_until(lambda: broker.dead_letter_queues().get(f"{queue}.DLQ"), message="dead letter")
    got = _management("POST", f"/api/queues/%2F/{queue}.DLQ/get",
                      {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"})  # fmt: skip
    headers = got[0]["properties"]["headers"]
    assert got[0]["properties"]["message_id"] == message.id
    assert headers[names.HEADER_ACTOR] == "explode"
    assert headers[names.HEADER_ORIGINAL_QUEUE] == queue
    assert headers[names.HEADER_RETRIES] == 0
    assert headers[names.HEADER_ERROR_TYPE] == "ValueError"
    assert len(headers[names.HEADER_ERROR]) == names.ERROR_TEXT_LIMIT
    assert headers[names.HEADER_FAILED_AT].startswith("20")
    assert headers[names.HEADER_DEAD_REASON]
    assert not any(key.startswith("x-") for key in headers)


def test_dead_letters_are_shown_replayed_with_retries_reset_and_purged(
    broker: RabbitmqBroker, namespace: str
) -> None:
    queue = f"{namespace}-ops"
    seen: list[int] = []

    @actors.actor(queue=queue, max_retries=0)
    def fail_once(n: int) -> None:
        seen.append(n)
        if seen.count(n) == 1:
            raise RuntimeError("first run fails")

    @actors.actor(queue=queue, max_retries=0)
    def always_fails() -> None:
        raise RuntimeError("never works")

    with running_worker(broker, threads=1):
        for n in range(3):
            fail_once.send(n)
        always_fails.send()
        wait_until(lambda: len(broker.dead_letters(queue)) == 4, message="4 dead letters")
        shown = broker.dead_letters(queue, limit=2)
        assert len(shown) == 2
        assert len(broker.dead_letters(queue)) == 4  # showing takes nothing away
        assert broker.replay_dead_letters(queue, actor="fail_once", limit=2) == 2
        assert broker.replay_dead_letters(queue, actor="fail_once") == 1
        wait_until(lambda: len(seen) == 6, message="the replayed runs")
        broker.join(queue, timeout=10)
    left = broker.dead_letters(queue)
    assert [letter.actor for letter in left] == ["always_fails"]
    assert left[0].retries == 0
    assert broker.purge(f"{queue}.DLQ") == 1
    assert broker.dead_letter_queues()[f"{queue}.DLQ"] == 0


def test_dlq_ttl_is_declared_on_the_dead_letter_queue(namespace: str, cleanups: Cleanups) -> None:
    broker = open_rabbitmq_broker(namespace=namespace, cleanups=cleanups, dlq_ttl=3600)
    broker.declare_queue(f"{namespace}-ttl")
    found = _management("GET", f"/api/queues/%2F/{namespace}-ttl.DLQ")
    assert found["arguments"]["x-message-ttl"] == 3_600_000


def _taking_two_of(
    broker: RabbitmqBroker, queue: str, count: int
) -> tuple[Consumer, list[Delivery]]:
    """Queue messages 0..count-1, and a consumer with prefetch 2 that took two of them."""

    @actors.actor(queue=queue)
    def task(number: int) -> None: ...

    broker.enqueue_many([task.message(n) for n in range(count)])
    taken: list[Delivery] = []
    consumer = broker.consume([queue], prefetch=2, on_delivery=taken.append)
    consumer.start()
    wait_until(lambda: len(taken) == 2, message="two deliveries")
    return consumer, taken


def test_a_new_prefetch_replaces_the_consumer_and_keeps_what_the_old_one_took(
    broker: RabbitmqBroker, namespace: str
) -> None:
    queue = f"{namespace}-prefetch"
    consumer, taken = _taking_two_of(broker, queue, 10)
    try:
        consumer.set_prefetch(5)

        def consumers() -> list[tuple[str, int]]:
            details = _management("GET", f"/api/queues/%2F/{queue}")["consumer_details"]
            return [(d["consumer_tag"], d["prefetch_count"]) for d in details]

        # RabbitMQ's statistics lag by a few seconds
        wait_until(lambda: [p for _, p in consumers()] == [5], timeout=20, message="one at 5")
        assert len(taken) == 7  # the old consumer's two stay taken, the new one took five
        ack_as_they_come(taken, 10)
        assert sorted(first_args(broker, taken)) == list(range(10))
        assert not any(d.redelivered for d in taken)
        broker.join(queue, timeout=10)
    finally:
        consumer.close()


def test_prefetch_changes_in_quick_succession_keep_the_connection(
    broker: RabbitmqBroker, namespace: str
) -> None:
    # RabbitMQ 3.10 drops the connection (INTERNAL_ERROR) if a consumer is cancelled before
    # its consume-ok went out; everything unacked would then come back a second time.
    queue = f"{namespace}-resize"
    consumer, taken = _taking_two_of(broker, queue, 40)
    try:
        for prefetch in (5, 9, 3, 12, 4, 8):
            consumer.set_prefetch(prefetch)
        ack_as_they_come(taken, 40)
        assert sorted(first_args(broker, taken)) == list(range(40))
        assert not any(d.redelivered for d in taken)
        broker.join(queue, timeout=10)
    finally:
        consumer.close()


# -- queue arguments ------------------------------------------------------------------------------


def test_redeclaring_with_other_arguments_names_the_argument_and_the_way_out(
    broker: RabbitmqBroker, namespace: str, cleanups: Cleanups
) -> None:
    queue = f"{namespace}-conflict"
    broker.declare_queue(queue)
    other = open_rabbitmq_broker(namespace=namespace, cleanups=cleanups, max_priority=5)
    with pytest.raises(QueueConflict) as caught:
        other.declare_queue(queue)
    assert caught.value.argument == "x-max-priority"
    assert "max_priority=10" in str(caught.value)
    assert "delete" in str(caught.value)
    consumer = other.consume([queue], prefetch=1, on_delivery=lambda _delivery: None)
    with pytest.raises(QueueConflict):
        consumer.start()  # a worker refuses to start rather than retrying forever


def test_quorum_queues_refuse_priorities() -> None:
    with pytest.raises(ConfigurationError, match="quorum"):
        RabbitmqBroker(url=RABBITMQ_URL, queue_type="quorum")


def test_quorum_queue_runs_and_dead_letters(namespace: str, cleanups: Cleanups) -> None:
    broker = open_rabbitmq_broker(
        namespace=namespace, cleanups=cleanups, queue_type="quorum", max_priority=None
    )
    registry.set_broker(broker)
    queue = f"{namespace}-quorum"
    runs: list[int] = []

    @actors.actor(queue=queue, max_retries=0)
    def task(n: int) -> None:
        runs.append(n)
        if n < 0:
            raise ValueError("negative")

    with running_worker(broker, threads=1):
        task.send(1)
        task.send(-1)
        wait_until(lambda: broker.dead_letters(queue), message="a dead letter")
        broker.join(queue, timeout=10)
    found = _management("GET", f"/api/queues/%2F/{queue}")
    assert found["type"] == "quorum"
    assert found["arguments"]["x-delivery-limit"] == 3
    assert sorted(runs) == [-1, 1]


# -- poison messages ---------------------------------------------------------------------------


def _die_holding_one(broker: RabbitmqBroker, queue: str) -> Delivery | None:
    """Take one delivery and close the consumer without settling it (a killed worker)."""
    taken: list[Delivery] = []
    consumer = broker.consume([queue], prefetch=1, on_delivery=taken.append)
    consumer.start()
    try:
        wait_until(lambda: taken, timeout=2, message="a delivery")
    except TimeoutError:
        return None
    finally:
        consumer.close()
    return taken[0]


def test_message_that_keeps_killing_its_worker_is_dead_lettered_as_poison(
    broker: RabbitmqBroker, namespace: str
) -> None:
    queue = f"{namespace}-poison"

    @actors.actor(queue=queue)
    def crash() -> None: ...

    message = crash.send()
    deliveries = [_die_holding_one(broker, queue) for _ in range(4)]
    counts = [d.deliveries if d is not None else None for d in deliveries]
    assert counts == [1, 2, 3, None]  # the third death sends it to the DLQ
    letters = broker.dead_letters(queue)
    assert [(letter.message_id, letter.reason) for letter in letters] == [(message.id, "poison")]


# -- faults, on a private node only ---------------------------------------------------------------


@pytest.fixture(scope="module")
def private_node() -> Iterator[PrivateRabbit]:
    with PrivateRabbit() as rabbit:
        yield rabbit


@pytest.mark.faults
def test_producer_and_worker_ride_through_closed_connections(
    private_node: PrivateRabbit, namespace: str
) -> None:
    broker = RabbitmqBroker(url=private_node.url, connect_timeout=20)
    registry.set_broker(broker)
    queue = f"{namespace}-cut"
    runs: list[int] = []

    @actors.actor(queue=queue)
    def task(n: int) -> None:
        runs.append(n)

    try:
        with running_worker(broker, threads=2):
            for n in range(20):
                task.send(n)
            wait_until(lambda: len(set(runs)) == 20, message="first 20 runs")
            private_node.close_all_connections()
            for n in range(20, 40):
                task.send(n)  # the producer reconnects
            wait_until(lambda: len(set(runs)) == 40, timeout=30, message="runs after the cut")
            broker.join(queue, timeout=10)
        assert set(runs) == set(range(40))
    finally:
        broker.close()


@pytest.mark.faults
def test_worker_started_while_rabbitmq_is_down_consumes_once_it_is_up(
    private_node: PrivateRabbit, namespace: str
) -> None:
    broker = RabbitmqBroker(url=private_node.url, connect_timeout=2)
    registry.set_broker(broker)
    queue = f"{namespace}-late"
    runs: list[int] = []

    @actors.actor(queue=queue)
    def task(n: int) -> None:
        runs.append(n)

    task.send(1)
    private_node.stop_app()
    try:
        with pytest.raises(ConnectionFailed):
            task.send(2)
        started = threading.Event()
        worker = actors.Worker(broker, threads=1)
        threading.Thread(target=lambda: (worker.start(), started.set()), daemon=True).start()
        wait_until(started.is_set, timeout=15, message="worker.start() returning while down")
    finally:
        private_node.start_app()
    try:
        task.send(3)
        wait_until(lambda: sorted(runs) == [1, 3], timeout=30, message="runs after start_app")
    finally:
        worker.stop(timeout=5)
        broker.close()


@pytest.mark.faults
def test_delayed_message_survives_a_broker_restart(
    private_node: PrivateRabbit, namespace: str
) -> None:
    broker = RabbitmqBroker(url=private_node.url, connect_timeout=20)
    registry.set_broker(broker)
    queue = f"{namespace}-durable-delay"
    runs: list[float] = []

    @actors.actor(queue=queue)
    def task() -> None:
        runs.append(time.time())

    sent_at = time.time()
    task.send_with_options(delay=3)
    private_node.stop_app()
    private_node.start_app()
    try:
        with running_worker(broker, threads=1):
            wait_until(lambda: runs, timeout=20, message="the delayed run after a restart")
        assert runs[0] - sent_at >= 3
    finally:
        broker.close()


def test_amqps_producer_and_consumer_work_through_tls(
    namespace: str, cleanups: Cleanups, tmp_path: Any
) -> None:
    # Given a TLS endpoint (a TLS-terminating proxy with a self-signed certificate) in front
    # of the local RabbitMQ, and a broker that trusts only that certificate
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    proxy = TcpProxy(5672, tls=server)
    proxy.start()
    cleanups(proxy.stop)
    tls_broker = open_rabbitmq_broker(
        namespace=namespace,
        cleanups=cleanups,
        url=f"amqps://guest:guest@127.0.0.1:{proxy.port}/",
        ssl_context=ssl.create_default_context(cafile=str(cert)),
        management_url="http://127.0.0.1:15672",
    )
    registry.set_broker(tls_broker)
    done: list[int] = []

    @actors.actor(queue=f"{namespace}.tls")
    def record(n: int) -> None:
        done.append(n)

    # When messages are sent and consumed over amqps
    with running_worker(tls_broker, threads=4):
        for n in range(200):
            record.send(n)
        wait_until(lambda: len(done) >= 200, timeout=30, message="200 runs over TLS")
        tls_broker.join(f"{namespace}.tls", timeout=10)

    # Then every message ran once, and both links went through the TLS endpoint
    assert sorted(done) == list(range(200))
    assert proxy.connections_accepted >= 2
