"""Cancellation: delayed messages skipped, running async and sync actors stopped."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

import actors
from actors.backends.base import Backend
from actors.broker import Broker
from actors.testing import wait_until


def _final(message_id: str) -> actors.MessageStatus:
    return wait_until(  # type: ignore[no-any-return]
        lambda: (s := actors.status(message_id)).finished_at and s, timeout=15, message="finished"
    )


def test_a_delayed_message_cancelled_before_it_runs_never_runs(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    ran: list[str] = []

    @actors.actor(queue=namespace, store_results=True)
    def later() -> None:
        ran.append("ran")

    message = later.send_with_options(delay=1.0)
    actors.cancel(message.id)
    assert actors.status(message.id).state == "cancelled"  # as good as cancelled already
    start_worker()
    assert _final(message.id).reason == "cancelled"
    with pytest.raises(actors.ResultFailure) as failure:
        message.get_result(block=True, timeout=5)
    assert failure.value.error_type == "Cancelled"
    broker.join(namespace, timeout=10)
    assert ran == []


def test_a_long_async_actor_is_cancelled_while_it_runs(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    cleaned_up: list[bool] = []

    @actors.actor(queue=namespace)
    async def long_wait() -> None:
        current = actors.current_message()
        assert current is not None
        current.set_progress(1, "waiting")
        try:
            await asyncio.sleep(60)
        finally:
            cleaned_up.append(True)

    start_worker()
    message = long_wait.send()
    wait_until(lambda: actors.status(message.id).progress == 1, message="running")
    started = time.monotonic()
    actors.cancel(message.id)
    final = _final(message.id)
    assert time.monotonic() - started < 5
    assert (final.state, cleaned_up) == ("cancelled", [True])
    broker.join(namespace, timeout=10)  # acknowledged: not retried


def test_a_sync_actor_is_interrupted_when_cancelled(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    started = threading.Event()
    cleaned_up: list[bool] = []

    @actors.actor(queue=namespace)
    def spin() -> None:
        started.set()
        try:
            while True:
                try:
                    sum(range(100))
                except Exception:  # does not swallow Cancelled
                    continue
        finally:
            cleaned_up.append(True)

    start_worker()
    message = spin.send()
    assert started.wait(10)
    actors.cancel(message.id)
    assert _final(message.id).state == "cancelled"
    assert cleaned_up == [True]
    broker.join(namespace, timeout=10)


def test_cancelling_a_finished_message_changes_nothing(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    @actors.actor(queue=namespace, store_results=True)
    def quick() -> int:
        return 1

    start_worker()
    message = quick.send()
    assert message.get_result(block=True, timeout=10) == 1
    actors.cancel(message.id)
    assert _final(message.id).state == "succeeded"


def test_a_delayed_message_cancelled_while_the_worker_runs_is_skipped(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    ran: list[str] = []

    @actors.actor(queue=namespace)
    def later() -> None:
        ran.append("ran")

    start_worker()
    message = later.send_with_options(delay=1.5)
    actors.cancel(message.id)
    final = _final(message.id)
    assert (final.state, final.reason, final.started_at) == ("cancelled", "cancelled", None)
    assert ran == []
