"""Time limits: sync actors interrupted, async actors cancelled, stuck processes replaced."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from collections.abc import Callable

import pytest

import actors
from actors.broker import Broker
from actors.brokers.memory import MemoryBroker
from actors.middleware.time_limit import TimeLimit
from actors.testing import wait_until


def test_a_cpu_bound_sync_actor_is_stopped(
    broker: Broker, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    cleaned_up: list[bool] = []

    @actors.actor(queue=namespace, time_limit=0.3, max_retries=0)
    def spin() -> None:
        try:
            n = 0
            while True:
                n += 1
        finally:
            cleaned_up.append(True)

    start_worker()
    started = time.monotonic()
    spin.send()
    broker.join(namespace, timeout=10)
    assert time.monotonic() - started < 5
    assert cleaned_up == [True]
    [dead] = broker.dead_letters(namespace)
    assert dead.error.startswith("TimeLimitExceeded: ")


def test_except_exception_does_not_swallow_the_time_limit(
    broker: Broker, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    @actors.actor(queue=namespace, time_limit=0.2, max_retries=0)
    def stubborn() -> None:
        while True:
            try:
                sum(range(1000))
            except Exception:
                continue

    start_worker()
    stubborn.send()
    broker.join(namespace, timeout=10)
    assert [d.error.split(":")[0] for d in broker.dead_letters(namespace)] == ["TimeLimitExceeded"]


def test_a_hung_async_actor_is_cancelled(
    broker: Broker, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    @actors.actor(queue=namespace, time_limit=0.3, max_retries=0)
    async def hang() -> None:
        await asyncio.Event().wait()

    start_worker()
    started = time.monotonic()
    hang.send()
    broker.join(namespace, timeout=10)
    assert time.monotonic() - started < 5
    [dead] = broker.dead_letters(namespace)
    assert dead.error == "CancelledError: time limit of 0.3s exceeded"


def test_actors_within_their_limit_are_not_disturbed(
    broker: Broker, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    done: list[int] = []

    @actors.actor(queue=namespace, time_limit=0.2)
    def quick(n: int) -> None:
        time.sleep(0.01)
        done.append(n)

    @actors.actor(queue=namespace, time_limit=0.2)
    async def quick_async(n: int) -> None:
        await asyncio.sleep(0.01)
        done.append(n)

    start_worker()
    for n in range(20):
        quick.send(n)
        quick_async.send(n)
    broker.join(namespace, timeout=10)
    time.sleep(0.3)  # past the limits: a late interrupt would hit the idle threads now
    assert len(done) == 40
    assert broker.dead_letters(namespace) == []


def test_an_unsupervised_worker_only_logs_a_stuck_actor(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = actors.set_broker(MemoryBroker(middleware=[TimeLimit(time_limit=0.1, grace=0.1)]))

    @actors.actor
    def stuck() -> None:
        time.sleep(0.6)  # C-level sleep: the soft limit cannot interrupt it

    worker = actors.Worker(broker, threads=1)
    worker.start()
    try:
        with caplog.at_level(logging.CRITICAL, logger="actors"):
            stuck.send()
            wait_until(lambda: any("past its time limit" in r.getMessage() for r in caplog.records),
                       timeout=5, message="hard limit reported")  # fmt: skip
        broker.join("default", timeout=5)
    finally:
        worker.stop(timeout=5)
    assert [d.reason for d in broker.dead_letters("default")] == ["failed"]


def _supervised_child() -> None:
    broker = actors.set_broker(MemoryBroker(middleware=[TimeLimit(time_limit=0.2, grace=0.3)]))

    @actors.actor
    def stuck() -> None:
        time.sleep(60)

    worker = actors.Worker(broker, threads=1)
    worker.supervised = True
    worker.start()
    stuck.send()
    time.sleep(30)  # the hard limit ends the process long before this


def test_a_supervised_worker_stuck_past_the_grace_exits_with_code_3() -> None:
    child = multiprocessing.get_context("spawn").Process(target=_supervised_child)
    started = time.monotonic()
    child.start()
    child.join(20)
    assert child.exitcode == 3
    assert time.monotonic() - started < 15
