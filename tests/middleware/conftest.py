"""Fixtures for middleware tests: a backend matching the broker, and in-process workers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import actors
from actors.backends.base import Backend
from actors.backends.memory import MemoryBackend
from actors.broker import Broker
from actors.brokers.memory import MemoryBroker
from tests.backends.support import open_redis_backend

Cleanups = Callable[[Callable[[], object]], None]


@pytest.fixture
def backend(broker: Broker, namespace: str, cleanups: Cleanups) -> Backend:
    """The memory backend with the memory broker, else a Redis backend under `namespace`."""
    made: Backend = (
        MemoryBackend()
        if isinstance(broker, MemoryBroker)
        else open_redis_backend(namespace, cleanups)
    )
    return actors.set_backend(made)


@pytest.fixture
def start_worker(broker: Broker, cleanups: Cleanups) -> Callable[..., actors.Worker]:
    """Start an in-process worker on `broker`; every one is stopped after the test."""

    def start(**options: Any) -> actors.Worker:
        worker = actors.Worker(broker, **{"threads": 4, **options})
        worker.start()
        cleanups(lambda: worker.stop(timeout=5))
        return worker

    return start
