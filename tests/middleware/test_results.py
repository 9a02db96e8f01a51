"""Results: get_result (blocking and async), failures, timeouts, TTL and tombstones."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

import actors
from actors.backends.base import Backend
from actors.broker import Broker
from actors.testing import wait_until


def test_get_result_returns_what_the_actor_returned(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    @actors.actor(queue=namespace, store_results=True)
    def add(a: int, b: int) -> dict[str, int]:
        return {"sum": a + b}

    start_worker()
    message = add.send(2, 3)
    assert message.get_result(block=True, timeout=10) == {"sum": 5}
    assert message.get_result() == {"sum": 5}  # still there for other readers


def test_a_final_failure_is_raised_as_result_failure(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    runs = 0

    @actors.actor(queue=namespace, store_results=True, max_retries=1, min_backoff=0.01)
    def broken() -> None:
        nonlocal runs
        runs += 1
        raise ValueError(f"boom {runs}")

    start_worker()
    message = broken.send()
    with pytest.raises(actors.ResultFailure) as failure:
        message.get_result(block=True, timeout=10)
    assert runs == 2  # stored once, after the last attempt, not after the first
    assert (failure.value.error_type, failure.value.error_message) == ("ValueError", "boom 2")
    assert failure.value.message_id == message.id


def test_result_timeout_when_nothing_arrives_in_time(
    broker: Broker, backend: Backend, namespace: str
) -> None:
    @actors.actor(queue=namespace, store_results=True)
    def never_run() -> int:
        return 1

    message = never_run.send()  # no worker
    with pytest.raises(actors.ResultTimeout):
        message.get_result(block=True, timeout=0.2)
    with pytest.raises(actors.ResultMissing):
        message.get_result(block=False)


def test_an_expired_result_is_missing(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    @actors.actor(queue=namespace, store_results=True, result_ttl=0.2)
    def short_lived() -> int:
        return 1

    start_worker()
    message = short_lived.send()
    assert message.get_result(block=True, timeout=10) == 1

    def expired() -> bool:
        try:
            message.get_result()
        except actors.ResultMissing:
            return True
        return False

    wait_until(expired, timeout=5, message="result expired")


def test_a_message_dead_lettered_without_an_error_leaves_a_missing_result(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    @actors.actor(queue=namespace, store_results=True)
    def stale() -> int:
        return 1

    start_worker()
    message = stale.send_with_options(delay=0.3, max_age=0.05)
    with pytest.raises(actors.ResultMissing, match="max-age"):
        message.get_result(block=True, timeout=10)  # at once, not after the timeout


def test_async_callers_await_the_result(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    @actors.actor(queue=namespace, store_results=True)
    async def double(x: int) -> int:
        await asyncio.sleep(0.05)
        return 2 * x

    start_worker()

    async def scenario() -> int:
        try:
            message = await double.send_async(21)
            return await message.get_result_async(timeout=10)
        finally:
            await broker.close_async()

    assert asyncio.run(scenario()) == 42


def test_actors_without_store_results_store_nothing(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    @actors.actor(queue=namespace)
    def plain() -> int:
        return 1

    start_worker()
    message = plain.send()
    broker.join(namespace, timeout=10)
    assert backend.get_result(message.id) is None


def test_an_unencodable_result_is_stored_as_a_failure(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    @actors.actor(queue=namespace, store_results=True)
    def weird() -> object:
        return object()

    start_worker()
    with pytest.raises(actors.ResultFailure, match="EncodingError"):
        weird.send().get_result(block=True, timeout=10)
