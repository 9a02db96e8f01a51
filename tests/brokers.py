"""How tests open a broker of each kind, isolated and cleaned up afterwards."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actors.broker import Broker

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_URL = "redis://127.0.0.1:6379/0"


def open_test_broker(
    kind: str,
    *,
    namespace: str,
    cleanups: Callable[[Callable[[], object]], None],
    **options: Any,
) -> Broker:
    """Open a broker of `kind` whose queues (or keys) all start with `namespace`."""
    if kind == "memory":
        from actors.brokers.memory import MemoryBroker

        return MemoryBroker(**options)
    if kind == "rabbitmq":
        from tests.rabbitmq_support import open_rabbitmq_broker

        return open_rabbitmq_broker(namespace=namespace, cleanups=cleanups, **options)
    if kind == "redis":
        from tests.redis_support import open_redis_broker

        return open_redis_broker(namespace=namespace, cleanups=cleanups, **options)
    raise ValueError(f"unknown broker kind {kind!r}")
