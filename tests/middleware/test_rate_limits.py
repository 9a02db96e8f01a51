"""Rate limits: concurrency and rate caps, per process and across processes through Redis."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable

import pytest
import redis

import actors
from actors.backends.base import Backend
from actors.backends.redis import RedisBackend
from actors.broker import Broker
from actors.brokers.memory import MemoryBroker
from actors.errors import ConfigurationError
from actors.middleware.rate_limits import parse_rate
from tests.backends.support import delete_keys
from tests.brokers import REDIS_URL


class Peak:
    """Counts actors running at once, and the most that ever did."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.done = 0

    def __enter__(self) -> None:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.running -= 1
            self.done += 1


def test_max_concurrency_caps_the_actors_running_at_once(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    peak = Peak()
    retries: list[int] = []

    @actors.actor(queue=namespace, max_concurrency=2)
    def slow() -> None:
        with peak:
            message = actors.current_message()
            assert message is not None
            retries.append(message.retries)
            time.sleep(0.05)

    start_worker(threads=6)
    for _ in range(12):
        slow.send()
    broker.join(namespace, timeout=20)
    assert peak.done == 12
    assert peak.peak == 2
    assert set(retries) == {0}  # put back without spending retries


def test_concurrency_key_limits_per_key(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    peaks = {"a": Peak(), "b": Peak()}

    @actors.actor(queue=namespace, max_concurrency=1, concurrency_key=lambda tenant: tenant)
    def per_tenant(tenant: str) -> None:
        with peaks[tenant]:
            time.sleep(0.05)

    start_worker(threads=6)
    for _ in range(4):
        per_tenant.send("a")
        per_tenant.send("b")
    broker.join(namespace, timeout=20)
    assert [p.done for p in peaks.values()] == [4, 4]
    assert [p.peak for p in peaks.values()] == [1, 1]


def test_rate_limit_spreads_starts_over_the_window(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    starts: list[float] = []

    @actors.actor(queue=namespace, rate_limit="4/s")
    def tick() -> None:
        starts.append(time.monotonic())

    start_worker(threads=4)
    for _ in range(8):
        tick.send()
    broker.join(namespace, timeout=20)
    assert len(starts) == 8
    assert max_in_window(sorted(starts), 1.0) <= 4
    assert max(starts) - min(starts) >= 0.9


def test_a_limiter_inside_an_actor_puts_the_message_back_without_spending_retries(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    limiter = actors.ConcurrencyLimiter(f"{namespace}-api", 1, retry_after=0.05)
    peak = Peak()
    retries: list[int] = []

    @actors.actor(queue=namespace, max_retries=0)
    def call_api() -> None:
        with limiter, peak:
            message = actors.current_message()
            assert message is not None
            retries.append(message.retries)
            time.sleep(0.05)

    start_worker(threads=4)
    for _ in range(5):
        call_api.send()
    broker.join(namespace, timeout=20)
    assert (peak.done, peak.peak, set(retries)) == (5, 1, {0})
    assert broker.dead_letters(namespace) == []


def test_rate_limiter_objects_raise_when_the_window_is_full(
    backend: Backend, namespace: str
) -> None:
    limiter = actors.RateLimiter(f"{namespace}-sms", "2/m", backend=backend)
    limiter.hit()
    with limiter:
        pass
    with pytest.raises(actors.RateLimitExceeded) as exceeded:
        limiter.hit()
    assert 0 < exceeded.value.retry_after <= 60


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100/m", (100, 60.0)),
        ("5/s", (5, 1.0)),
        ("1/h", (1, 3600.0)),
        ("3/10s", (3, 10.0)),
        ("2/d", (2, 86400.0)),
    ],
)
def test_parse_rate(text: str, expected: tuple[int, float]) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["100", "0/s", "5/week", "x/m", ""])
def test_parse_rate_refuses_nonsense(text: str) -> None:
    with pytest.raises(ConfigurationError, match="rate_limit"):
        parse_rate(text)


def test_bad_limit_options_fail_at_first_use(namespace: str) -> None:
    actors.set_broker(MemoryBroker())

    @actors.actor(queue=namespace, rate_limit="lots")
    def bad() -> None: ...

    with pytest.raises(ConfigurationError, match="rate_limit"):
        bad.send()


def max_in_window(times: list[float], window: float) -> int:
    """The most entries of sorted `times` within any half-open window of `window` seconds."""
    best, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


# -- across processes -------------------------------------------------------------------------


def _hammer(namespace: str, kind: str, count: int) -> None:
    """One worker process: `count` messages on its own queue, limits shared through Redis."""
    probe = redis.Redis.from_url(REDIS_URL)
    broker = actors.set_broker(MemoryBroker())
    actors.set_backend(RedisBackend(url=REDIS_URL, namespace=namespace))
    running, levels, starts = (f"{namespace}:probe:{k}" for k in ("running", "levels", "starts"))

    @actors.actor(max_concurrency=2)
    def concurrent() -> None:
        probe.rpush(levels, probe.incr(running))
        time.sleep(0.03)
        probe.decr(running)

    @actors.actor(rate_limit="10/s")
    def rated() -> None:
        seconds, micros = probe.time()
        probe.rpush(starts, seconds + micros / 1e6)

    target = concurrent if kind == "concurrency" else rated
    for _ in range(count):
        target.send()
    worker = actors.Worker(broker, threads=4)
    worker.start()
    broker.join("default", timeout=60)
    worker.stop(timeout=5)


@pytest.mark.parametrize("kind", ["concurrency", "rate"])
def test_limits_hold_across_three_worker_processes(
    namespace: str, kind: str, cleanups: Callable[[Callable[[], object]], None]
) -> None:
    cleanups(lambda: delete_keys(namespace))
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_hammer, args=(namespace, kind, 8)) for _ in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(90)
    assert [child.exitcode for child in children] == [0, 0, 0]
    probe = redis.Redis.from_url(REDIS_URL)
    try:
        if kind == "concurrency":
            levels = [int(x) for x in probe.lrange(f"{namespace}:probe:levels", 0, -1)]
            assert len(levels) == 24
            assert max(levels) == 2
        else:
            starts = sorted(float(x) for x in probe.lrange(f"{namespace}:probe:starts", 0, -1))
            assert len(starts) == 24
            # starts are stamped just after the limiter admitted them: allow for that jitter
            assert max_in_window(starts, 1.0 - 0.05) <= 10
            assert starts[-1] - starts[0] >= 1.9  # 24 starts at 10/s need two full windows
    finally:
        probe.close()
