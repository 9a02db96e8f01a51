"""The broker contract: every broker (memory, RabbitMQ, Redis) must pass all of it."""

from __future__ import annotations

import threading
import time
from typing import Any

import msgpack
import pytest

import actors
from actors import names
from actors.broker import Broker
from actors.delivery import Delivery
from actors.encoding import Codec
from actors.testing import running_worker, wait_until
from tests.support.deliveries import ack_as_they_come, first_args


def _consume(broker: Broker, queue: str, *, prefetch: int = 1) -> tuple[Any, list[Delivery]]:
    """Start a bare consumer that collects deliveries without settling them."""
    taken: list[Delivery] = []
    consumer = broker.consume([queue], prefetch=prefetch, on_delivery=taken.append)
    consumer.start()
    return consumer, taken


def test_sent_message_runs_once_and_leaves_the_queue_empty(broker: Broker, namespace: str) -> None:
    runs: list[tuple[int, str]] = []

    @actors.actor(queue=f"{namespace}-q")
    def record(number: int, text: str) -> None:
        runs.append((number, text))

    with running_worker(broker, threads=2):
        for number in range(20):
            record.send(number, "x")
        wait_until(lambda: len(runs) >= 20, message="20 runs")
        broker.join(f"{namespace}-q", timeout=10)
    assert sorted(runs) == [(n, "x") for n in range(20)]


def test_async_actor_runs_on_the_worker_loop(broker: Broker, namespace: str) -> None:
    import asyncio

    done: list[str] = []

    @actors.actor(queue=f"{namespace}-q")
    async def greet(name: str) -> None:
        await asyncio.sleep(0.01)
        done.append(name)

    with running_worker(broker, threads=1):
        greet.send("ada")
        greet.send_with_options(kwargs={"name": "bob"})
        wait_until(lambda: sorted(done) == ["ada", "bob"], message="both greetings")


def test_backlog_drains_highest_priority_first(broker: Broker, namespace: str) -> None:
    queue = f"{namespace}-q"

    @actors.actor(queue=queue)
    def task(priority: int) -> None: ...

    priorities = [3, 0, 9, 5, 1, 9, 7, 2, 0, 4]
    for priority in priorities:
        task.send_with_options(args=(priority,), priority=priority)
    consumer, taken = _consume(broker, queue, prefetch=1)
    try:
        order: list[int] = []
        for _ in priorities:
            wait_until(lambda: len(taken) > len(order), message="next delivery")
            delivery = taken[len(order)]
            order.append(broker.codec.unpack(delivery.body, delivery.headers).args[0])
            delivery.ack()
        assert order == sorted(priorities, reverse=True)
    finally:
        consumer.close()


def test_delayed_message_runs_no_earlier_than_asked(broker: Broker, namespace: str) -> None:
    ran_at: list[float] = []

    @actors.actor(queue=f"{namespace}-q")
    def stamp() -> None:
        ran_at.append(time.time())

    with running_worker(broker, threads=1):
        sent_at = time.time()
        stamp.send_with_options(delay=1.0)
        stamp.send()
        wait_until(lambda: len(ran_at) == 2, timeout=15, message="both runs")
    immediate, delayed = sorted(ran_at)
    assert delayed - sent_at >= 1.0
    assert immediate - sent_at < 1.0


def test_unsettled_delivery_is_redelivered_when_its_consumer_dies(
    broker: Broker, namespace: str
) -> None:
    queue = f"{namespace}-q"

    @actors.actor(queue=queue)
    def task() -> None: ...

    message = task.send()
    first, taken = _consume(broker, queue)
    wait_until(lambda: taken, message="first delivery")
    assert taken[0].redelivered is False
    first.close()  # dies without acking

    second, retaken = _consume(broker, queue)
    try:
        wait_until(lambda: retaken, timeout=30, message="redelivery")
        again = broker.codec.unpack(retaken[0].body, retaken[0].headers)
        assert again.id == message.id
        assert retaken[0].redelivered is True
        retaken[0].ack()
    finally:
        second.close()


def test_a_wider_prefetch_takes_more_ahead_and_nothing_is_taken_twice(
    broker: Broker, namespace: str
) -> None:
    queue = f"{namespace}-q"

    @actors.actor(queue=queue)
    def task(number: int) -> None: ...

    broker.enqueue_many([task.message(n) for n in range(12)])
    consumer, taken = _consume(broker, queue, prefetch=2)
    try:
        wait_until(lambda: len(taken) == 2, message="the first two deliveries")
        consumer.set_prefetch(6)
        wait_until(lambda: len(taken) >= 6, message="six taken ahead, none settled")
        ack_as_they_come(taken, 12)
        assert sorted(first_args(broker, taken)) == list(range(12))  # each once
        broker.join(queue, timeout=10)
    finally:
        consumer.close()


def test_acked_message_is_not_delivered_again(broker: Broker, namespace: str) -> None:
    queue = f"{namespace}-q"

    @actors.actor(queue=queue)
    def task() -> None: ...

    task.send()
    first, taken = _consume(broker, queue)
    wait_until(lambda: taken, message="delivery")
    taken[0].ack()
    broker.join(queue, timeout=10)
    first.close()
    assert broker.queue_depth(queue) == 0


def test_failing_actor_is_dead_lettered_with_the_error(broker: Broker, namespace: str) -> None:
    queue = f"{namespace}-q"

    @actors.actor(queue=queue, max_retries=0)
    def explode(code: int) -> None:
        raise ValueError(f"boom {code}")

    with running_worker(broker, threads=1):
        message = explode.send(7)
        letters = wait_until(lambda: broker.dead_letters(queue), message="a dead letter")
    assert letters[0].message_id == message.id
    assert letters[0].actor == "explode"
    assert letters[0].args == [7]
    assert "ValueError" in letters[0].error
    assert "boom 7" in letters[0].error
    assert broker.dead_letter_queues().get(names.dead_letter_queue(queue), 0) >= 1


def test_dead_letters_can_be_replayed(broker: Broker, namespace: str) -> None:
    queue = f"{namespace}-q"
    attempts: list[int] = []

    @actors.actor(queue=queue, max_retries=0)
    def flaky() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")

    with running_worker(broker, threads=1):
        flaky.send()
        wait_until(lambda: broker.dead_letters(queue), message="a dead letter")
        assert broker.replay_dead_letters(queue) == 1
        wait_until(lambda: len(attempts) == 2, message="the replayed run")
        broker.join(queue, timeout=10)
    assert broker.dead_letters(queue) == []


HOSTILE_BODIES = {
    "not-msgpack": b"\xc1\xc1 this is not msgpack",
    "truncated": msgpack.packb({"v": 1, "id": "x", "queue": "q", "actor": "a"})[:-3],
    "deeply-nested": msgpack.packb(
        {
            "v": 1,
            "id": "n",
            "queue": "q",
            "actor": "a",
            "args": [
                [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]
            ],
            "kwargs": {},
        }
    ),
    "missing-field": msgpack.packb({"v": 1, "id": "m", "queue": "q", "args": [], "kwargs": {}}),
    "ext-type": msgpack.packb(msgpack.ExtType(42, b"payload")),
    "huge": b"\x00" * (Codec().max_message_size + 1),
}


def test_hostile_bodies_are_dead_lettered_and_the_worker_keeps_going(
    broker: Broker, namespace: str
) -> None:
    queue = f"{namespace}-q"
    good: list[int] = []

    @actors.actor(queue=queue)
    def fine(number: int) -> None:
        good.append(number)

    with running_worker(broker, threads=2):
        for kind, body in HOSTILE_BODIES.items():
            broker.publish_raw(queue, body, {names.HEADER_ID: kind})
        for number in range(5):
            fine.send(number)
        wait_until(lambda: len(good) == 5, message="the good messages")
        letters = wait_until(
            lambda: (found := broker.dead_letters(queue, limit=50)) and len(found) == 6 and found,
            message="six dead letters",
        )
    reasons = {letter.message_id: letter.reason for letter in letters}
    assert reasons == dict.fromkeys(HOSTILE_BODIES, "decode-error")


def test_unknown_actor_is_dead_lettered(broker: Broker, namespace: str) -> None:
    queue = f"{namespace}-q"

    @actors.actor(queue=queue)
    def known() -> None: ...

    stranger = actors.Message(queue=queue, actor="nobody_declared_me")
    with running_worker(broker, threads=1):
        broker.enqueue(stranger)
        letters = wait_until(lambda: broker.dead_letters(queue), message="a dead letter")
    assert letters[0].message_id == stranger.id
    assert letters[0].reason == "unknown-actor"


def test_wrong_argument_count_is_dead_lettered(broker: Broker, namespace: str) -> None:
    queue = f"{namespace}-q"

    @actors.actor(queue=queue, max_retries=0)
    def two(a: int, b: int) -> int:
        return a + b

    with running_worker(broker, threads=1):
        broker.enqueue(actors.Message(queue=queue, actor="two", args=(1,)))
        letters = wait_until(lambda: broker.dead_letters(queue), message="a dead letter")
    assert "TypeError" in letters[0].error


def test_oversized_and_unencodable_sends_fail_in_the_producer(
    broker: Broker, namespace: str
) -> None:
    @actors.actor(queue=f"{namespace}-q")
    def take(data: Any, *, when: Any = None) -> None: ...

    with pytest.raises(actors.MessageTooLarge):
        take.send(b"x" * (broker.codec.max_message_size + 1))
    with pytest.raises(actors.EncodingError) as caught:
        take.send(1, when=threading.Lock())
    assert caught.value.argument == "kwargs['when']"
    assert broker.queue_depth(f"{namespace}-q") == 0


def test_message_built_from_the_wire_format_document_runs(broker: Broker, namespace: str) -> None:
    """docs/wire-format.md: a producer in another language writes exactly this."""
    queue = f"{namespace}-q"
    got: list[Any] = []

    @actors.actor(queue=queue)
    def sum_up(numbers: list[int], *, label: str) -> None:
        got.append((label, sum(numbers)))

    body = msgpack.packb({
        "v": 1, "id": "0123456789abcdef0123456789abcdef", "queue": queue, "actor": "sum_up",
        "args": [[1, 2, 3]], "kwargs": {"label": "total"}, "options": {},
        "enqueued_at": time.time(), "priority": 0, "retries": 0,
    })  # fmt: skip
    headers = {names.HEADER_ID: "0123456789abcdef0123456789abcdef", names.HEADER_ACTOR: "sum_up"}
    with running_worker(broker, threads=1):
        broker.publish_raw(queue, body, headers)
        wait_until(lambda: got, message="the foreign message ran")
    assert got == [("total", 6)]


def test_enqueue_many_publishes_every_message(broker: Broker, namespace: str) -> None:
    queue = f"{namespace}-q"
    seen: set[int] = set()

    @actors.actor(queue=queue)
    def mark(number: int) -> None:
        seen.add(number)

    broker.enqueue_many([mark.message(n) for n in range(200)])
    with running_worker(broker, threads=4):
        wait_until(lambda: len(seen) == 200, timeout=30, message="200 runs")
        broker.join(queue, timeout=10)


def test_join_times_out_while_messages_wait(broker: Broker, namespace: str) -> None:
    @actors.actor(queue=f"{namespace}-q")
    def idle() -> None: ...

    idle.send()
    with pytest.raises(TimeoutError):
        broker.join(f"{namespace}-q", timeout=0.3)
    assert broker.purge(f"{namespace}-q") == 1
