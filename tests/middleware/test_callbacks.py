"""Callbacks: on_success and on_failure actors, by object or by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import actors
from actors.broker import Broker
from actors.testing import wait_until


def test_on_success_gets_the_message_id_and_the_result(
    broker: Broker, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    seen: list[tuple[str, Any]] = []

    @actors.actor(queue=namespace)
    def record(message_id: str, result: Any) -> None:
        seen.append((message_id, result))

    @actors.actor(queue=namespace, on_success=record)
    def by_object(x: int) -> int:
        return x + 1

    @actors.actor(queue=namespace, on_success="record")
    def by_name(x: int) -> list[int]:
        return [x]

    start_worker()
    first, second = by_object.send(1), by_name.send(2)
    wait_until(lambda: len(seen) == 2, timeout=10, message="both callbacks ran")
    assert sorted(seen) == sorted([(first.id, 2), (second.id, [2])])


def test_on_failure_fires_once_when_the_message_finally_fails(
    broker: Broker, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    failures: list[tuple[str, dict[str, str]]] = []
    runs = 0

    @actors.actor(queue=namespace)
    def alert(message_id: str, error: dict[str, str]) -> None:
        failures.append((message_id, error))

    @actors.actor(queue=namespace, max_retries=2, min_backoff=0.01, on_failure=alert)
    def broken() -> None:
        nonlocal runs
        runs += 1
        raise ValueError("boom")

    start_worker()
    message = broken.send()
    wait_until(lambda: failures, timeout=10, message="on_failure ran")
    broker.join(namespace, timeout=10)
    assert runs == 3
    assert failures == [(message.id, {"type": "ValueError", "message": "boom"})]


def test_on_success_is_not_sent_for_failures_nor_on_failure_for_successes(
    broker: Broker, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    calls: list[str] = []

    @actors.actor(queue=namespace)
    def success(message_id: str, result: Any) -> None:
        calls.append("success")

    @actors.actor(queue=namespace)
    def failure(message_id: str, error: Any) -> None:
        calls.append("failure")

    @actors.actor(queue=namespace, max_retries=0, on_success=success, on_failure=failure)
    def maybe(fail: bool) -> None:
        if fail:
            raise RuntimeError("no")

    start_worker()
    maybe.send(False)
    maybe.send(True)
    wait_until(lambda: len(calls) == 2, timeout=10, message="two callbacks")
    broker.join(namespace, timeout=10)
    assert sorted(calls) == ["failure", "success"]
