"""Shutdown notifications: worker_is_stopping() and WorkerShutdown for sync actors."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import actors
from actors.broker import Broker
from actors.testing import wait_until


def test_an_actor_sees_its_worker_stopping_and_returns_early(
    broker: Broker, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    seen: list[bool] = []
    running = threading.Event()

    @actors.actor(queue=namespace)
    def long_job() -> None:
        seen.append(actors.worker_is_stopping())
        running.set()
        deadline = time.monotonic() + 20
        while not actors.worker_is_stopping() and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(actors.worker_is_stopping())

    worker = start_worker(threads=1)
    long_job.send()
    assert running.wait(10)
    started = time.monotonic()
    worker.stop(timeout=15)
    assert time.monotonic() - started < 5
    assert seen == [False, True]
    assert not actors.worker_is_stopping()  # outside an actor


def test_notify_shutdown_interrupts_a_sync_actor_and_puts_its_message_back(
    broker: Broker, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    interrupted: list[str] = []
    runs: list[tuple[str, int]] = []
    running = threading.Event()

    @actors.actor(queue=namespace, notify_shutdown=True, max_retries=0)
    def crunch() -> None:
        current = actors.current_message()
        assert current is not None
        runs.append((current.id, current.retries))
        if interrupted:
            return  # the second run, on the next worker
        running.set()
        try:
            while True:
                sum(range(100))
        except actors.WorkerShutdown:
            interrupted.append("yes")
            raise

    worker = start_worker(threads=1)
    message = crunch.send()
    assert running.wait(10)
    worker.stop(timeout=10)
    assert interrupted == ["yes"]
    assert broker.dead_letters(namespace) == []
    start_worker(threads=1)  # the message is back on its queue, retries untouched
    wait_until(lambda: len(runs) == 2, timeout=10, message="message ran again")
    assert runs == [(message.id, 0), (message.id, 0)]
