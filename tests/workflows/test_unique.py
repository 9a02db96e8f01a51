"""Unique messages: duplicate sends dropped while an equal message is pending."""

from __future__ import annotations

from collections.abc import Callable

import actors
from actors.backends.base import Backend
from actors.broker import Broker
from actors.testing import wait_until


def test_a_duplicate_send_is_dropped_while_the_first_is_queued(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    runs: list[int] = []

    @actors.actor(queue=namespace, unique_for=60)
    def refresh(account: int) -> None:
        runs.append(account)

    first = refresh.send(7)
    duplicate = refresh.send(7)
    other = refresh.send(8)
    assert duplicate.id == first.id and duplicate.options["unique_duplicate"] is True
    assert "unique_duplicate" not in other.options
    assert broker.queue_depth(namespace) == 2
    start_worker()
    broker.join(namespace, timeout=10)
    assert sorted(runs) == [7, 8]
    wait_until(lambda: refresh.send(7).id != first.id, message="lock released after success")


def test_an_explicit_unique_key_makes_different_arguments_equal(
    broker: Broker, backend: Backend, namespace: str
) -> None:
    @actors.actor(queue=namespace, unique_for=60)
    def sync(payload: dict[str, int]) -> None: ...

    first = sync.send_with_options(args=({"a": 1},), unique_key="tenant-1")
    second = sync.send_with_options(args=({"a": 2},), unique_key="tenant-1")
    assert second.id == first.id
    assert broker.queue_depth(namespace) == 1


def test_the_lock_expires_after_unique_for(
    broker: Broker, backend: Backend, namespace: str
) -> None:
    @actors.actor(queue=namespace, unique_for=0.2)
    def ping() -> None: ...

    first = ping.send()
    wait_until(lambda: ping.send().id != first.id, message="lock expired")
