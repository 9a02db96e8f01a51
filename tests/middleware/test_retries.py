"""Retries: backoff, retry_when, throws, Retry and Fail, dead-lettering when retries run out."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

import pytest

import actors
from actors.broker import Broker
from actors.middleware.retries import RetryPolicy

FAST = {"min_backoff": 0.01, "max_backoff": 0.05}


def test_an_actor_failing_twice_then_succeeding_runs_exactly_three_times(
    broker: Broker, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    runs: list[int] = []

    @actors.actor(queue=namespace, max_retries=5, **FAST)
    def flaky() -> None:
        message = actors.current_message()
        assert message is not None
        runs.append(message.retries)
        if len(runs) < 3:
            raise ValueError("not yet")

    start_worker()
    flaky.send()
    broker.join(namespace, timeout=10)
    assert runs == [0, 1, 2]
    assert broker.dead_letters(namespace) == []


def test_an_always_failing_actor_lands_in_the_dlq_with_its_error(
    broker: Broker, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    runs = 0

    @actors.actor(queue=namespace, max_retries=2, **FAST)
    def broken(x: int) -> None:
        nonlocal runs
        runs += 1
        raise ValueError(f"boom {x}")

    start_worker()
    message = broken.send(7)
    broker.join(namespace, timeout=10)
    assert runs == 3
    [dead] = broker.dead_letters(namespace)
    assert (dead.message_id, dead.reason, dead.retries) == (message.id, "max-retries", 2)
    assert dead.error == "ValueError: boom 7"


def test_throws_exceptions_are_dead_lettered_without_retry(
    broker: Broker, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    runs = 0

    @actors.actor(queue=namespace, max_retries=5, throws=(KeyError,), **FAST)
    def lookup() -> None:
        nonlocal runs
        runs += 1
        raise KeyError("missing")

    start_worker()
    lookup.send()
    broker.join(namespace, timeout=10)
    assert runs == 1
    [dead] = broker.dead_letters(namespace)
    assert dead.reason == "non-retryable"


def test_fail_dead_letters_at_once_with_its_reason(
    broker: Broker, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    @actors.actor(queue=namespace, max_retries=5, **FAST)
    def validate() -> None:
        raise actors.Fail("bad input")

    start_worker()
    validate.send()
    broker.join(namespace, timeout=10)
    [dead] = broker.dead_letters(namespace)
    assert (dead.reason, dead.error) == ("failed", "Fail: bad input")


def test_retry_when_replaces_the_max_retries_rule(
    broker: Broker, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    seen: list[tuple[int, str]] = []

    def only_timeouts(retries: int, exc: BaseException) -> bool:
        seen.append((retries, type(exc).__name__))
        return isinstance(exc, TimeoutError)

    @actors.actor(queue=namespace, retry_when=only_timeouts, **FAST)
    def call(n: int) -> None:
        message = actors.current_message()
        assert message is not None
        raise TimeoutError if message.retries < 2 else RuntimeError("gave up")

    start_worker()
    call.send(1)
    broker.join(namespace, timeout=10)
    assert seen == [(0, "TimeoutError"), (1, "TimeoutError"), (2, "RuntimeError")]
    assert [d.reason for d in broker.dead_letters(namespace)] == ["non-retryable"]


def test_retry_asks_for_a_later_run_and_is_not_logged_as_an_error(
    broker: Broker,
    namespace: str,
    start_worker: Callable[..., actors.Worker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    started: list[float] = []

    @actors.actor(queue=namespace, max_retries=3)
    def poll() -> str:
        started.append(time.monotonic())
        if len(started) == 1:
            raise actors.Retry(delay=0.3)
        return "ok"

    start_worker()
    with caplog.at_level(logging.INFO, logger="actors"):
        poll.send()
        broker.join(namespace, timeout=10)
    assert len(started) == 2
    assert started[1] - started[0] >= 0.29
    retry_logs = [r for r in caplog.records if "asked for a retry" in r.getMessage()]
    assert retry_logs and all(r.levelno == logging.INFO for r in retry_logs)


def test_per_message_options_override_the_actor(
    broker: Broker, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    runs = 0

    @actors.actor(queue=namespace, max_retries=10, **FAST)
    def broken() -> None:
        nonlocal runs
        runs += 1
        raise ValueError("boom")

    start_worker()
    broken.send_with_options(max_retries=0)
    broker.join(namespace, timeout=10)
    assert runs == 1


def test_async_actors_are_retried_too(
    broker: Broker, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    runs = 0

    @actors.actor(queue=namespace, max_retries=3, **FAST)
    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 2:
            raise ConnectionError("reset")

    start_worker()
    flaky.send()
    broker.join(namespace, timeout=10)
    assert runs == 2


def test_backoff_grows_exponentially_with_jitter_between_the_bounds() -> None:
    policy = RetryPolicy(max_retries=20, min_backoff=1.0, max_backoff=30.0)
    rng = random.Random(1)
    assert policy.backoff(0, rng) == 1.0
    for retries, ceiling in [(1, 2.0), (3, 8.0), (10, 30.0), (1000, 30.0)]:
        delays = [policy.backoff(retries, rng) for _ in range(200)]
        assert all(1.0 <= d <= ceiling for d in delays)
        assert max(delays) > 1.0 + (ceiling - 1.0) * 0.8  # spread over the whole range


def test_policy_decisions() -> None:
    policy = RetryPolicy(max_retries=2, throws=(KeyError,))
    assert policy.decide(0, ValueError()) is None
    assert policy.decide(2, ValueError()) == "max-retries"
    assert policy.decide(0, KeyError()) == "non-retryable"
    assert policy.decide(0, actors.Fail("no")) == "failed"
    assert policy.decide(5, actors.Retry()) == "max-retries"
