"""What the Redis broker does beyond the contract suite: streams, claims, namespaces, faults."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import actors
from actors import names
from actors.brokers.redis import RedisBroker
from actors.delivery import Delivery, Failure
from actors.errors import ConnectionFailed
from actors.status import State
from actors.testing import running_worker, wait_until
from tests.redis_support import REDIS_URL, open_redis_broker
from tests.support.fixtures import RedisFactory
from tests.support.net import free_port

pytestmark = pytest.mark.redis

Cleanups = Callable[[Callable[[], object]], None]
BrokerFactory = Callable[..., RedisBroker]


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    """A plain client on the shared Redis, to look at keys as an operator would."""
    with redis.Redis.from_url(REDIS_URL, decode_responses=True, encoding_errors="replace") as plain:
        yield plain


@pytest.fixture
def make_broker(namespace: str, cleanups: Cleanups) -> BrokerFactory:
    """Open Redis brokers under the test's namespace (or another one), all cleaned up."""

    def make(**options: Any) -> RedisBroker:
        options.setdefault("namespace", namespace)
        broker = open_redis_broker(cleanups=cleanups, **options)
        actors.set_broker(broker)
        return broker

    return make


def collect(broker: RedisBroker, queue: str, *, prefetch: int = 10) -> tuple[Any, list[Delivery]]:
    """A bare consumer that appends every delivery to a list and never settles it."""
    taken: list[Delivery] = []
    consumer = broker.consume([queue], prefetch=prefetch, on_delivery=taken.append)
    consumer.start()
    return consumer, taken


def stream_key(broker: RedisBroker, queue: str, priority: int = 0) -> str:
    return names.redis_stream_key(broker.namespace, queue, priority)


def test_headers_are_readable_stream_fields_next_to_the_body(
    make_broker: BrokerFactory, client: redis.Redis
) -> None:
    broker = make_broker()

    @actors.actor(queue="mail")
    def send_mail(to: str) -> None: ...

    message = send_mail.send_with_options(args=("ada@example.com",), priority=5)
    [(_, fields)] = client.xrange(stream_key(broker, "mail", 5))
    assert fields[names.HEADER_ID] == message.id
    assert fields[names.HEADER_ACTOR] == "send_mail"
    assert fields[names.HEADER_QUEUE] == "mail"
    assert fields[names.HEADER_RETRIES] == "0"
    assert names.REDIS_FIELD_BODY in fields


def test_higher_priority_wins_even_when_sent_later(make_broker: BrokerFactory) -> None:
    broker = make_broker()

    @actors.actor(queue="jobs")
    def job(label: str) -> None: ...

    for label, priority in [("low", 0), ("mid", 4), ("top", 9), ("mid2", 4)]:
        job.send_with_options(args=(label,), priority=priority)
    consumer, taken = collect(broker, "jobs", prefetch=4)
    try:
        wait_until(lambda: len(taken) == 4, message="four deliveries")
        assert [broker.codec.unpack(d.body).args[0] for d in taken] == [
            "top", "mid", "mid2", "low",
        ]  # fmt: skip
    finally:
        consumer.close()


def test_delayed_messages_wait_in_redis_and_move_exactly_once_under_racing_consumers(
    make_broker: BrokerFactory, client: redis.Redis
) -> None:
    # Given 200 messages delayed by 0.5 s and four consumers racing to move them
    broker = make_broker()

    @actors.actor(queue="later")
    def later(number: int) -> None: ...

    for number in range(200):
        later.send_with_options(args=(number,), delay=0.5)
    assert client.zcard(names.redis_delayed_key(broker.namespace, "later")) == 200
    assert broker.queue_depth("later") == 200
    consumers = [collect(broker, "later", prefetch=200) for _ in range(4)]
    try:
        # When they come due
        wait_until(
            lambda: sum(len(taken) for _, taken in consumers) >= 200,
            timeout=10,
            message="200 deliveries",
        )
        # Then each was delivered exactly once, and nothing is left behind
        numbers = Counter(
            broker.codec.unpack(d.body).args[0] for _, taken in consumers for d in taken
        )
        assert numbers == Counter(range(200))
        assert client.zcard(names.redis_delayed_key(broker.namespace, "later")) == 0
        assert client.xlen(names.redis_delayed_messages_key(broker.namespace, "later")) == 0
        assert client.xlen(stream_key(broker, "later")) == 200  # all in flight, none doubled
    finally:
        for consumer, _ in consumers:
            consumer.close()


def test_entry_of_a_consumer_that_vanished_is_claimed_after_claim_after(
    make_broker: BrokerFactory, client: redis.Redis
) -> None:
    # Given a message read by a consumer that then died (it never acks, never closes)
    broker = make_broker(claim_after=0.5)

    @actors.actor(queue="work")
    def task() -> None: ...

    message = task.send()
    broker.declare_queue("work")
    client.xreadgroup(names.REDIS_GROUP, "dead-worker", {stream_key(broker, "work"): ">"})
    # When a live consumer runs
    consumer, taken = collect(broker, "work")
    try:
        wait_until(lambda: taken, timeout=10, message="the claimed delivery")
        # Then it gets the message, marked as a redelivery
        assert taken[0].message_id == message.id
        assert taken[0].redelivered is True
        assert taken[0].deliveries == 2
        taken[0].ack()
        broker.join("work", timeout=5)
    finally:
        consumer.close()


def test_message_delivered_too_often_is_dead_lettered_as_poison(
    make_broker: BrokerFactory, client: redis.Redis
) -> None:
    # Given a message that two workers took and died with (delivered twice)
    broker = make_broker(claim_after=0.3, max_deliveries=2)

    @actors.actor(queue="work")
    def task() -> None: ...

    message = task.send()
    broker.declare_queue("work")
    stream = stream_key(broker, "work")
    [[_, [(entry_id, _)]]] = client.xreadgroup(names.REDIS_GROUP, "dead-1", {stream: ">"})
    client.xclaim(stream, names.REDIS_GROUP, "dead-2", 0, [entry_id])
    # When a live consumer claims it a third time
    consumer, taken = collect(broker, "work")
    try:
        letters = wait_until(lambda: broker.dead_letters("work"), message="a poison letter")
    finally:
        consumer.close()
    # Then it goes to the DLQ instead of to the worker
    assert taken == []
    assert letters[0].message_id == message.id
    assert letters[0].reason == "poison"
    assert broker.queue_depth("work") == 0


def test_worker_killed_mid_message_gets_its_message_redelivered(
    make_broker: BrokerFactory, namespace: str, client: redis.Redis
) -> None:
    # Given a worker process that took a message and is stuck in it
    broker = make_broker(claim_after=1.0)
    marker = f"{namespace}:started"
    child = subprocess.Popen(
        [sys.executable, "-c", STUCK_WORKER, REDIS_URL, namespace, marker],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        done: list[str] = []

        @actors.actor(queue="work", actor_name="stuck")
        def stuck(marker: str) -> None:
            done.append(marker)

        message = stuck.send(marker)
        wait_until(lambda: client.exists(marker), timeout=30, message="the child took it")
        # When it is killed with SIGKILL
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    # Then another worker runs the message once claim_after has passed
    with running_worker(broker, threads=1):
        wait_until(lambda: done, timeout=15, message="the redelivered run")
        broker.join("work", timeout=5)
    assert done == [marker]
    assert message.id
    assert broker.queue_depth("work") == 0


STUCK_WORKER = """
import sys, time
import actors, redis
from actors.brokers.redis import RedisBroker

url, namespace, marker = sys.argv[1:4]
broker = RedisBroker(url=url, namespace=namespace, claim_after=1.0)
actors.set_broker(broker)

@actors.actor(queue="work", actor_name="stuck")
def stuck(marker):
    redis.Redis.from_url(url).set(marker, "1")
    time.sleep(3600)

actors.Worker(broker, threads=1).start()
time.sleep(3600)
"""


def test_long_running_message_is_not_taken_by_a_second_live_worker(
    make_broker: BrokerFactory,
) -> None:
    # Given two live workers and a message that runs far longer than claim_after
    first = make_broker(claim_after=0.6)
    second = make_broker(claim_after=0.6)
    runs: list[float] = []

    @actors.actor(queue="slow", max_retries=0)
    def slow() -> None:
        runs.append(time.monotonic())
        time.sleep(2.5)

    slow.send()
    with running_worker(first, threads=1), running_worker(second, threads=1):
        wait_until(lambda: runs, message="the run")
        # When it runs for 4x claim_after, the heartbeat keeps it with its worker
        first.join("slow", timeout=10)
    # Then it ran once
    assert len(runs) == 1


def test_acknowledged_messages_leave_no_trace(
    make_broker: BrokerFactory, client: redis.Redis
) -> None:
    broker = make_broker()

    @actors.actor(queue="bulk")
    def noop(number: int) -> None: ...

    broker.enqueue_many([noop.message(n) for n in range(500)])
    with running_worker(broker, threads=4):
        broker.join("bulk", timeout=30)
    stream = stream_key(broker, "bulk")
    assert client.xlen(stream) == 0
    assert client.xpending(stream, names.REDIS_GROUP)["pending"] == 0
    assert client.memory_usage(stream) < 2_000  # bytes: entries are deleted on ack


def test_an_ack_goes_out_while_the_other_prefetched_messages_are_still_held(
    make_broker: BrokerFactory, client: redis.Redis
) -> None:
    # Given a consumer holding four messages, its whole prefetch, none of them settled
    broker = make_broker()
    broker.declare_queue("held")
    for n in range(4):
        broker.publish_raw("held", b"body %d" % n)
    consumer, taken = collect(broker, "held", prefetch=4)
    stream = stream_key(broker, "held")
    try:
        wait_until(lambda: len(taken) == 4, message="four deliveries")
        # When one is acknowledged and the other three stay in flight
        taken[0].ack()
        # Then its entry is acknowledged and deleted without waiting for the others
        wait_until(lambda: client.xlen(stream) == 3, timeout=5, message="the ack")
        assert client.xpending(stream, names.REDIS_GROUP)["pending"] == 3
        # And the free slot takes the next message
        broker.publish_raw("held", b"body 4")
        wait_until(lambda: len(taken) == 5, timeout=5, message="the fifth delivery")
        for delivery in taken[1:]:
            delivery.ack()
        wait_until(lambda: client.xlen(stream) == 0, timeout=5, message="every ack")
        assert client.xpending(stream, names.REDIS_GROUP)["pending"] == 0
    finally:
        consumer.close()


def test_status_of_a_drained_batch_reaches_its_final_state(
    make_broker: BrokerFactory,
) -> None:
    # Given many quick messages on a worker with the default stack (status on with Redis)
    broker = make_broker()

    @actors.actor(queue="quick")
    def quick(number: int) -> None: ...

    messages = [quick.message(n) for n in range(200)]
    broker.enqueue_many(messages)
    # When they are drained
    with running_worker(broker, threads=8):
        broker.join("quick", timeout=30)
        # Then every message's status reaches "succeeded" (written in batches, shortly after)
        wait_until(
            lambda: all(actors.status(m.id).state is State.SUCCEEDED for m in messages),
            timeout=10,
            message="every status succeeded",
        )


def test_dead_letters_carry_the_reason_as_readable_fields(
    make_broker: BrokerFactory, client: redis.Redis
) -> None:
    broker = make_broker()

    @actors.actor(queue="fragile", max_retries=0)
    def fragile(number: int) -> None:
        raise ValueError(f"bad number {number}")

    with running_worker(broker, threads=1):
        message = fragile.send_with_options(args=(7,), priority=3)
        wait_until(lambda: broker.dead_letters("fragile"), message="a dead letter")
    dlq = names.redis_dead_letter_key(broker.namespace, "fragile")
    assert dlq.endswith(":fragile.DLQ")
    [(_, fields)] = client.xrange(dlq)
    assert fields[names.HEADER_ID] == message.id
    assert fields[names.HEADER_ACTOR] == "fragile"
    assert fields[names.HEADER_DEAD_REASON] == "max-retries"
    assert fields[names.HEADER_ERROR_TYPE] == "ValueError"
    assert fields[names.HEADER_ERROR] == "bad number 7"
    assert fields[names.HEADER_FAILED_AT].endswith("+00:00")
    assert fields[names.HEADER_ORIGINAL_QUEUE] == "fragile"
    assert fields[names.REDIS_FIELD_PRIORITY] == "3"
    assert broker.dead_letter_queues() == {"fragile.DLQ": 1}


def test_replay_moves_back_only_the_chosen_actor_and_keeps_priority(
    make_broker: BrokerFactory, client: redis.Redis
) -> None:
    broker = make_broker()

    @actors.actor(queue="q")
    def alpha() -> None: ...

    @actors.actor(queue="q")
    def beta() -> None: ...

    consumer, taken = collect(broker, "q")
    try:
        alpha.send_with_options(priority=6)
        beta.send()
        alpha.send_with_options(priority=6)
        wait_until(lambda: len(taken) == 3, message="three deliveries")
        for delivery in taken:
            delivery.dead_letter(Failure("failed", "RuntimeError", "no"))
    finally:
        consumer.close()
    assert broker.queue_depth("q.DLQ") == 3
    assert broker.replay_dead_letters("q", actor="alpha", limit=1) == 1
    assert broker.replay_dead_letters("q", actor="alpha") == 1
    assert [d.actor for d in broker.dead_letters("q")] == ["beta"]
    entries = client.xrange(stream_key(broker, "q", 6))
    assert [fields[names.HEADER_ACTOR] for _, fields in entries] == ["alpha", "alpha"]
    assert all(names.HEADER_DEAD_REASON not in fields for _, fields in entries)
    assert broker.purge("q.DLQ") == 1
    assert broker.dead_letter_queues() == {"q.DLQ": 0}


def test_purge_drops_ready_and_delayed_messages_but_not_those_in_flight(
    make_broker: BrokerFactory,
) -> None:
    broker = make_broker()

    @actors.actor(queue="q")
    def task() -> None: ...

    task.send()
    consumer, taken = collect(broker, "q", prefetch=1)
    try:
        wait_until(lambda: taken, message="one in flight")
        task.send()
        task.send_with_options(delay=60)
        assert broker.purge("q") == 2
        assert broker.queue_depth("q") == 1
        taken[0].ack()
        broker.join("q", timeout=5)
    finally:
        consumer.close()


def test_namespaces_keep_apps_apart(make_broker: BrokerFactory, namespace: str) -> None:
    mine = make_broker()
    theirs = make_broker(namespace=f"{namespace}-other")
    mine.publish_raw("shared", b"mine")
    theirs.publish_raw("shared", b"theirs")
    theirs.publish_raw("shared", b"theirs too")
    assert mine.queue_depth("shared") == 1
    assert theirs.queue_depth("shared") == 2
    assert theirs.purge("shared") == 2
    assert mine.queue_depth("shared") == 1


def test_consumer_reconnects_after_its_connections_are_killed(
    make_broker: BrokerFactory, client: redis.Redis
) -> None:
    # Given a worker with one message in flight
    broker = make_broker(claim_after=5)
    release = threading.Event()
    runs: list[int] = []

    @actors.actor(queue="q")
    def task(number: int) -> None:
        if number == 0:
            release.wait(10)
        runs.append(number)

    with running_worker(broker, threads=2) as worker:
        task.send(0)
        stream = stream_key(broker, "q")
        wait_until(lambda: client.xpending(stream, names.REDIS_GROUP)["pending"] == 1,
                   message="one message in flight")  # fmt: skip
        # When Redis drops every connection of its consumer (CLIENT KILL on our own clients)
        consumer_name = worker._consumer.name  # type: ignore[union-attr]
        assert kill_clients(client, consumer_name) >= 1
        release.set()
        # Then it reconnects: the in-flight message is acked, new messages keep flowing
        for number in range(1, 6):
            task.send(number)
        wait_until(lambda: len(runs) == 6, timeout=15, message="six runs")
        broker.join("q", timeout=10)
    assert sorted(runs) == list(range(6))


def kill_clients(client: redis.Redis, consumer_name: str) -> int:
    """CLIENT KILL the connections whose name mentions `consumer_name`; return how many."""
    ids = [c["id"] for c in client.client_list() if consumer_name in c.get("name", "")]
    for client_id in ids:
        client.client_kill_filter(_id=client_id)
    return len(ids)


def test_producer_gives_up_with_connection_failed_after_its_timeout(
    namespace: str, cleanups: Cleanups
) -> None:
    broker = RedisBroker(
        url=f"redis://127.0.0.1:{free_port()}/0", namespace=namespace, connection_timeout=0.5
    )
    cleanups(broker.close)
    started = time.monotonic()
    with pytest.raises(ConnectionFailed, match=r"unreachable for 0\.5s"):
        broker.publish_raw("q", b"x")
    assert time.monotonic() - started < 5


def test_missing_durability_is_warned_about(
    make_broker: BrokerFactory, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    broker = make_broker()
    with caplog.at_level(logging.WARNING, logger="actors.brokers.redis"):
        broker.declare_queue("q")
    appendonly = client.config_get("appendonly")["appendonly"] == "yes"
    assert ("without appendonly" in caplog.text) is not appendonly


def test_worker_carries_on_across_a_redis_restart(
    private_redis: RedisFactory, namespace: str, cleanups: Cleanups
) -> None:
    # Given a durable private Redis and a worker with a message in flight
    server = private_redis(appendonly=True, fsync_always=True)
    broker = open_redis_broker(url=server.url, namespace=namespace, cleanups=cleanups,
                               claim_after=30)  # fmt: skip
    actors.set_broker(broker)
    release = threading.Event()
    runs: list[int] = []

    @actors.actor(queue="q")
    def task(number: int) -> None:
        if number == 0:
            release.wait(10)
        runs.append(number)

    with running_worker(broker, threads=2):
        task.send(0)
        for number in range(1, 11):
            task.send(number)
        wait_until(lambda: len(runs) == 10, message="ten runs before the restart")
        # When Redis restarts
        server.restart()
        release.set()
        # Then the in-flight message is settled and new ones run, each once
        for number in range(11, 21):
            task.send(number)
        wait_until(lambda: len(runs) == 21, timeout=30, message="all runs after the restart")
        broker.join("q", timeout=15)
    assert sorted(runs) == list(range(21))


def test_results_are_stored_in_the_same_redis_under_the_same_namespace(
    make_broker: BrokerFactory, client: redis.Redis
) -> None:
    broker = make_broker()

    @actors.actor(queue="q", store_results=True)
    def add(a: int, b: int) -> int:
        return a + b

    with running_worker(broker, threads=1):
        message = add.send(2, 3)
        assert message.get_result(block=True, timeout=10) == 5
    assert client.keys(f"{broker.namespace}:{names.RESULT_KEY_PREFIX}*")


def test_dead_letter_queues_cannot_be_consumed(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    with pytest.raises(actors.ConfigurationError, match="replay_dead_letters"):
        broker.consume(["q.DLQ"], prefetch=1, on_delivery=lambda delivery: None)


def test_broker_options_can_ride_in_the_url(namespace: str, cleanups: Cleanups) -> None:
    broker = actors_broker_from_url(
        f"{REDIS_URL}?namespace={namespace}&claim_after=7.5&max_deliveries=5", cleanups
    )
    assert (broker.namespace, broker.claim_after, broker.max_deliveries) == (namespace, 7.5, 5)
    assert broker.url == REDIS_URL
    broker.publish_raw("q", b"x")
    assert broker.queue_depth("q") == 1


def actors_broker_from_url(url: str, cleanups: Cleanups) -> RedisBroker:
    from actors.settings import broker_from_url
    from tests.redis_support import delete_namespace

    broker = broker_from_url(url)
    assert isinstance(broker, RedisBroker)
    cleanups(lambda: delete_namespace(broker.namespace))
    cleanups(broker.close)
    return broker


def test_worker_started_while_redis_is_down_waits_and_then_runs(
    private_redis: RedisFactory, namespace: str, cleanups: Cleanups
) -> None:
    # Given a worker started while its Redis is down
    server = private_redis(appendonly=True)
    broker = open_redis_broker(url=server.url, namespace=namespace, cleanups=cleanups,
                               connection_timeout=0.5)  # fmt: skip
    actors.set_broker(broker)
    runs: list[int] = []

    @actors.actor(queue="q")
    def task(number: int) -> None:
        runs.append(number)

    server.kill()
    with running_worker(broker, threads=1, queues=["q"]):
        # When Redis comes up
        server.start()
        task.send(1)
        # Then the worker connects and runs the message
        wait_until(lambda: runs, timeout=15, message="the run")
    assert runs == [1]
