"""The backend contract, on the memory and Redis backends."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from actors.backends.base import Backend
from actors.backends.redis import RedisBackend
from actors.errors import BackendError


def test_a_stored_result_is_read_back(any_backend: Backend) -> None:
    assert any_backend.get_result("m1") is None
    any_backend.put_result("m1", b"payload", ttl=5)
    assert any_backend.get_result("m1") == b"payload"
    assert any_backend.wait_result("m1", 1) == b"payload"


def test_a_result_expires_after_its_ttl(any_backend: Backend) -> None:
    any_backend.put_result("m1", b"payload", ttl=0.1)
    time.sleep(0.15)  # the TTL itself is what is under test
    assert any_backend.get_result("m1") is None


def test_every_blocked_waiter_wakes_when_the_result_arrives(any_backend: Backend) -> None:
    got: list[bytes | None] = []
    waiters = [
        threading.Thread(target=lambda: got.append(any_backend.wait_result("m1", 5)))
        for _ in range(3)
    ]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.1)  # let them block first, so the wake-up path is what is tested
    started = time.monotonic()
    any_backend.put_result("m1", b"done", ttl=5)
    for waiter in waiters:
        waiter.join(5)
    assert got == [b"done"] * 3
    assert time.monotonic() - started < 1.0
    assert any_backend.get_result("m1") == b"done"  # waiting did not consume it


def test_a_wait_without_result_times_out(any_backend: Backend) -> None:
    started = time.monotonic()
    assert any_backend.wait_result("none", 0.2) is None
    assert 0.15 <= time.monotonic() - started < 2


def test_async_waiters_wake_without_polling(any_backend: Backend) -> None:
    async def scenario() -> list[bytes | None]:
        waiters = [asyncio.create_task(any_backend.wait_result_async("m1", 5)) for _ in range(2)]
        await asyncio.sleep(0.1)
        await asyncio.to_thread(any_backend.put_result, "m1", b"done", 5)
        return list(await asyncio.gather(*waiters))

    assert asyncio.run(scenario()) == [b"done", b"done"]
    assert asyncio.run(any_backend.wait_result_async("other", 0.1)) is None


def test_concurrency_slots_are_bounded_and_released(any_backend: Backend) -> None:
    assert any_backend.acquire_slot("k", "a", 2, ttl=10) == 0
    assert any_backend.acquire_slot("k", "b", 2, ttl=10) == 0
    wait = any_backend.acquire_slot("k", "c", 2, ttl=10)
    assert 0 < wait <= 10
    any_backend.release_slot("k", "a")
    assert any_backend.acquire_slot("k", "c", 2, ttl=10) == 0


def test_a_slot_whose_holder_stopped_refreshing_expires(any_backend: Backend) -> None:
    assert any_backend.acquire_slot("k", "dead", 1, ttl=0.2) == 0
    assert any_backend.acquire_slot("k", "alive", 1, ttl=0.2) > 0
    time.sleep(0.25)  # the expiry itself is what is under test
    assert any_backend.acquire_slot("k", "alive", 1, ttl=0.3) == 0


def test_refreshed_slots_outlive_their_first_ttl(any_backend: Backend) -> None:
    assert any_backend.acquire_slot("k", "a", 1, ttl=0.3) == 0
    for _ in range(3):
        time.sleep(0.15)
        any_backend.refresh_slots([("k", "a")], ttl=0.3)
    assert any_backend.acquire_slot("k", "b", 1, ttl=0.3) > 0


def test_rate_counter_allows_limit_hits_per_sliding_window(any_backend: Backend) -> None:
    assert [any_backend.hit_rate("r", 3, 0.5) for _ in range(3)] == [0, 0, 0]
    wait = any_backend.hit_rate("r", 3, 0.5)
    assert 0 < wait <= 0.5
    time.sleep(wait + 0.02)
    assert any_backend.hit_rate("r", 3, 0.5) == 0


def test_redis_backend_errors_are_translated() -> None:
    backend = RedisBackend(url="redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    with pytest.raises(BackendError):
        backend.get_result("m1")
    with pytest.raises(BackendError):
        backend.acquire_slot("k", "a", 1, ttl=1)
