"""Schedules: ticks, catch-up, time zones, enable/disable, and three schedulers at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

import actors
from actors.backends.memory import MemoryBackend
from actors.brokers.memory import MemoryBroker
from actors.scheduler import Schedule, Scheduler, entries, run_now, set_enabled
from tests.backends.support import open_redis_backend

Cleanups = Callable[[Callable[[], object]], None]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def memory() -> MemoryBroker:
    broker = actors.set_broker(MemoryBroker())
    actors.set_backend(MemoryBackend())
    return broker  # type: ignore[return-value]


def test_a_missed_period_runs_once_on_catch_up(memory: MemoryBroker, namespace: str) -> None:
    @actors.actor(queue=namespace)
    def report() -> None: ...

    actors.schedule(report, every=60, name="report")
    clock = Clock(6000.0 + 30)
    scheduler = Scheduler(clock=clock)
    assert scheduler.tick() == []  # first sight: waits for the next tick, no past one
    clock.now = 6060.0
    [first] = scheduler.tick()
    assert scheduler.tick() == []  # same tick, not twice
    clock.now = 6060.0 + 10 * 60 + 5  # down for ten periods
    [catch_up] = scheduler.tick()
    assert scheduler.tick() == []
    assert first.id != catch_up.id
    assert memory.queue_depth(namespace) == 2


def test_disabled_schedules_do_not_run_and_enable_brings_them_back(
    memory: MemoryBroker, namespace: str
) -> None:
    @actors.actor(queue=namespace)
    def job() -> None: ...

    actors.schedule(job, every=10, name="job")
    clock = Clock(1000.0)
    scheduler = Scheduler(clock=clock)
    scheduler.tick()
    set_enabled("job", False)
    clock.now = 1010.0
    assert scheduler.tick() == []
    assert [e.enabled for e in entries(clock.now)] == [False]
    set_enabled("job", True)
    clock.now = 1020.0
    assert len(scheduler.tick()) == 1


def test_cron_runs_in_its_time_zone_and_actor_option_declares_it(
    memory: MemoryBroker, namespace: str
) -> None:
    @actors.actor(queue=namespace, cron="0 2 * * *", cron_tz="Europe/Paris")
    def nightly() -> None: ...

    [entry] = entries(datetime(2024, 7, 1, 12, tzinfo=ZoneInfo("UTC")).timestamp())
    assert entry.schedule.name == "nightly"
    assert entry.next_run == datetime(2024, 7, 2, 2, tzinfo=ZoneInfo("Europe/Paris"))
    assert entry.next_run.astimezone(ZoneInfo("UTC")).hour == 0  # CEST is UTC+2
    schedule = Schedule("n", "nightly", cron="0 2 * * *", tz="Europe/Paris")
    two_am = datetime(2024, 7, 2, 2, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    assert schedule.latest_tick(two_am) == two_am
    assert schedule.latest_tick(two_am - 1) == two_am - 86400


def test_run_now_enqueues_at_once(memory: MemoryBroker, namespace: str) -> None:
    @actors.actor(queue=namespace)
    def job(x: int) -> None: ...

    actors.schedule(job, every=3600, args=(5,), name="hourly")
    message = run_now("hourly")
    assert (message.args, memory.queue_depth(namespace)) == ((5,), 1)


def test_bad_schedules_are_refused(memory: MemoryBroker, namespace: str) -> None:
    @actors.actor(queue=namespace)
    def job() -> None: ...

    with pytest.raises(actors.ConfigurationError):
        actors.schedule(job)
    with pytest.raises(actors.ConfigurationError):
        actors.schedule(job, cron="not cron")
    with pytest.raises(actors.ConfigurationError):
        actors.schedule(job, every=1, tz="Mars/Olympus")


def test_three_schedulers_enqueue_each_tick_exactly_once(
    memory: MemoryBroker, namespace: str, cleanups: Cleanups
) -> None:
    # Given three schedulers sharing one Redis backend, each in its own thread, and a worker
    actors.set_backend(open_redis_backend(namespace, cleanups))
    seen: list[str] = []

    @actors.actor(queue=namespace)
    def tick() -> None:
        current = actors.current_message()
        assert current is not None
        seen.append(current.id)

    actors.schedule(tick, every=1, name="every-second")
    worker = actors.Worker(memory, queues=[namespace], threads=2)
    worker.start()
    cleanups(worker.stop)
    schedulers = [Scheduler() for _ in range(3)]
    threads = [threading.Thread(target=s.run, daemon=True) for s in schedulers]
    # When they run for five seconds
    for thread in threads:
        thread.start()
    time.sleep(5.0)  # the duration under test, not a wait for a condition
    for scheduler in schedulers:
        scheduler.stop()
    for thread in threads:
        thread.join(timeout=5)
    memory.join(namespace, timeout=10)
    # Then every second was enqueued exactly once
    assert len(set(seen)) == len(seen)
    assert 4 <= len(seen) <= 5
