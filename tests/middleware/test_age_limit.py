"""Age limit: too-old messages are dead-lettered with the reason, and not run."""

from __future__ import annotations

from collections.abc import Callable

import actors
from actors.broker import Broker


def test_a_message_older_than_max_age_is_dead_lettered_not_run(
    broker: Broker, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    runs: list[str] = []

    @actors.actor(queue=namespace, max_age=1.0)
    def report(name: str) -> None:
        runs.append(name)

    start_worker()
    report.send("fresh")
    stale = report.send_with_options(args=("stale",), delay=1.5)
    broker.join(namespace, timeout=10)
    assert runs == ["fresh"]
    [dead] = broker.dead_letters(namespace)
    assert (dead.message_id, dead.reason) == (stale.id, "max-age")
    assert "max_age is 1s" in dead.error


def test_max_age_can_be_given_per_message(
    broker: Broker, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    runs = 0

    @actors.actor(queue=namespace)
    def report() -> None:
        nonlocal runs
        runs += 1

    start_worker()
    report.send_with_options(delay=0.3, max_age=0.05)
    report.send_with_options(delay=0.3)
    broker.join(namespace, timeout=10)
    assert runs == 1
    assert [d.reason for d in broker.dead_letters(namespace)] == ["max-age"]
