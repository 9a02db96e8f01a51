"""The in-process worker: sync and async actors, concurrency bounds, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

import actors
from actors import prefetch as sizing
from actors.brokers.memory import MemoryBroker, MemoryConsumer
from actors.delivery import Delivery
from actors.testing import running_worker, wait_until


def test_sync_and_async_actors_run_side_by_side() -> None:
    broker = actors.set_broker(MemoryBroker())
    sync_threads: set[str] = set()
    async_threads: set[str] = set()

    @actors.actor
    def blocking(n: int) -> None:
        sync_threads.add(threading.current_thread().name)

    @actors.actor
    async def evented(n: int) -> None:
        await asyncio.sleep(0)
        async_threads.add(threading.current_thread().name)

    with running_worker(broker, threads=3):
        for n in range(30):
            blocking.send(n)
            evented.send(n)
        broker.join("default", timeout=10)
    assert sync_threads and all(name.startswith("actors-worker-") for name in sync_threads)
    assert async_threads == {"actors-event-loop"}


def test_async_actors_in_flight_are_bounded_by_their_own_setting() -> None:
    broker = actors.set_broker(MemoryBroker())
    running = 0
    peak = 0
    release = asyncio.Event()

    @actors.actor
    async def hold() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1

    with running_worker(broker, threads=1, async_concurrency=5, prefetch=20) as worker:
        for _ in range(12):
            hold.send()
        wait_until(lambda: running == 5, message="five async actors running")
        assert worker._loop is not None
        worker._loop.call_soon_threadsafe(release.set)
        broker.join("default", timeout=10)
    assert peak == 5  # more than one thread's worth, and never above the async bound


def test_stop_lets_in_flight_work_finish() -> None:
    broker = actors.set_broker(MemoryBroker())
    started = threading.Event()
    finish = threading.Event()
    finished: list[int] = []

    @actors.actor
    def slow(n: int) -> None:
        started.set()
        finish.wait(5)
        finished.append(n)

    worker = actors.Worker(broker, threads=1)
    worker.start()
    slow.send(1)
    started.wait(5)
    stopper = threading.Thread(target=worker.stop, kwargs={"timeout": 10})
    stopper.start()
    wait_until(worker.stopping.is_set, message="worker stopping")
    finish.set()
    stopper.join(10)
    assert finished == [1]
    assert broker.queue_depth("default") == 0


def test_stop_returns_unfinished_work_to_the_queue_after_the_timeout() -> None:
    broker = actors.set_broker(MemoryBroker())
    started = threading.Event()
    release = threading.Event()

    @actors.actor
    def stuck() -> None:
        started.set()
        release.wait(10)

    @actors.actor
    def waiting() -> None: ...

    worker = actors.Worker(broker, threads=1, prefetch=5)
    worker.start()
    stuck.send()
    for _ in range(3):
        waiting.send()
    started.wait(5)
    worker.stop(timeout=0.2)
    release.set()
    # the running message and the three waiting ones are all back in the queue
    assert broker.queue_depth("default") == 4


def test_worker_recycles_after_max_messages() -> None:
    broker = actors.set_broker(MemoryBroker())
    count: list[int] = []

    @actors.actor
    def one() -> None:
        count.append(1)

    worker = actors.Worker(broker, threads=1, max_messages=3, prefetch=1)
    worker.start()
    for _ in range(5):
        one.send()
    wait_until(worker.stopped.is_set, message="worker stopped after 3 messages")
    assert len(count) == 3
    assert broker.queue_depth("default") == 2


def test_current_message_is_visible_inside_sync_and_async_actors() -> None:
    broker = actors.set_broker(MemoryBroker())
    seen: dict[str, str] = {}

    @actors.actor
    def sync_probe() -> None:
        message = actors.current_message()
        assert message is not None
        seen["sync"] = message.id

    @actors.actor
    async def async_probe() -> None:
        message = actors.current_message()
        assert message is not None
        seen["async"] = message.id

    with running_worker(broker, threads=1):
        first = sync_probe.send()
        second = async_probe.send()
        wait_until(lambda: len(seen) == 2, message="both probes")
    assert seen == {"sync": first.id, "async": second.id}
    assert actors.current_message() is None


def test_out_of_range_numbers_in_a_body_are_dead_lettered_and_the_worker_goes_on() -> None:
    import msgpack

    broker = actors.set_broker(MemoryBroker())
    done: list[int] = []

    @actors.actor
    def fine(n: int) -> None:
        done.append(n)

    body = msgpack.packb({"v": 1, "id": "inf", "queue": "default", "actor": "fine",
                          "args": [1], "kwargs": {}, "retries": float("inf")})  # fmt: skip
    with running_worker(broker, threads=1, shutdown_timeout=5):
        broker.publish_raw("default", body, {"actors-deliveries": "garbage"})
        fine.send(2)
        wait_until(lambda: done == [2], message="the good message ran")
        letters = wait_until(lambda: broker.dead_letters("default"), message="a dead letter")
    assert letters[0].reason == "decode-error"


def test_concurrent_stops_shut_down_once() -> None:
    broker = actors.set_broker(MemoryBroker())

    @actors.actor
    async def quick() -> None: ...

    worker = actors.Worker(broker, threads=1)
    worker.start()
    quick.send()
    broker.join("default", timeout=5)
    stoppers = [threading.Thread(target=worker.stop) for _ in range(3)]
    for stopper in stoppers:
        stopper.start()
    for stopper in stoppers:
        stopper.join(10)
    assert worker.stopped.is_set()
    assert not any(stopper.is_alive() for stopper in stoppers)


def test_stop_returns_async_messages_that_waited_for_a_slot() -> None:
    broker = actors.set_broker(MemoryBroker())
    started: list[int] = []

    @actors.actor
    async def hold(n: int) -> None:
        started.append(n)
        await asyncio.sleep(30)

    worker = actors.Worker(broker, threads=1, async_concurrency=1, prefetch=5)
    worker.start()
    for n in range(4):
        hold.send(n)
    wait_until(lambda: started, message="one async actor running")
    worker.stop(timeout=0.2)
    assert len(started) == 1  # the three waiting for the slot never started
    assert broker.queue_depth("default") == 4  # all four are back in the queue


def test_middleware_idle_at_boot_leave_the_message_hooks() -> None:
    broker = actors.set_broker(MemoryBroker())
    calls: list[str] = []

    class Idle(actors.Middleware):
        """Finds at boot that it has nothing to do for messages."""

        def __init__(self) -> None:
            self.booted = False

        @property
        def handles_messages(self) -> bool:
            return not self.booted

        def after_worker_boot(self, broker: actors.Broker, worker: actors.Worker) -> None:
            self.booted = True

        def before_process_message(self, broker: actors.Broker, delivery: object) -> None:
            calls.append("idle")

    class Busy(actors.Middleware):
        def before_process_message(self, broker: actors.Broker, delivery: object) -> None:
            calls.append("busy")

    broker.add_middleware(Idle())
    broker.add_middleware(Busy())

    @actors.actor
    def noop() -> None:
        pass

    with running_worker(broker, threads=1):
        noop.send()
        broker.join("default", timeout=10)
    assert calls == ["busy"]


def test_option_driven_middleware_stay_off_actors_without_their_options() -> None:
    broker = actors.set_broker(MemoryBroker())
    seen: list[tuple[str, bool]] = []

    class Tagged(actors.Middleware):
        """Acts only on messages whose actor, or the message itself, sets `tag`."""

        actor_options = frozenset({"tag"})

        def applies_to(self, actor: actors.Actor[..., object]) -> bool:
            return "tag" in actor.options

        def before_process_message(self, broker: actors.Broker, delivery: Delivery) -> None:
            assert delivery.actor is not None
            seen.append((delivery.actor.actor_name, delivery.option("tag", False)))

    broker.add_middleware(Tagged())

    @actors.actor
    def plain() -> None:
        pass

    @actors.actor(tag=True)
    def tagged() -> None:
        pass

    with running_worker(broker, threads=1):
        plain.send()
        tagged.send()
        plain.send_with_options(tag=True)  # a message option brings every hook back
        broker.join("default", timeout=10)
    assert sorted(seen) == [("plain", True), ("tagged", True)]


def test_the_default_prefetch_grows_with_the_rate_and_a_fixed_one_stays(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sizing, "WINDOW", 0.05)
    caplog.set_level(logging.DEBUG, logger="actors.worker")
    broker = actors.set_broker(MemoryBroker())

    @actors.actor
    def noop(n: int) -> None: ...

    def resized() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("prefetch ")]

    with running_worker(broker, threads=1, prefetch=2):
        broker.enqueue_many([noop.message(n) for n in range(3000)])
        broker.join("default", timeout=30)
    assert resized() == []

    with running_worker(broker, threads=1) as worker:  # the default: 2 per thread, then by rate
        broker.enqueue_many([noop.message(n) for n in range(3000)])
        wait_until(resized, timeout=10, message="a resized prefetch")
        assert isinstance(worker._consumer, MemoryConsumer)
        assert worker._consumer._prefetch > 2
        broker.join("default", timeout=30)
    assert resized()[0].startswith("prefetch 2 -> ")
