"""Opening backends in tests: Redis ones get a namespace of their own, emptied afterwards."""

from __future__ import annotations

from collections.abc import Callable

import redis

from actors.backends.redis import RedisBackend
from tests.brokers import REDIS_URL

Cleanups = Callable[[Callable[[], object]], None]


def delete_keys(namespace: str) -> None:
    """Delete every Redis key under `namespace`."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def open_redis_backend(namespace: str, cleanups: Cleanups) -> RedisBackend:
    """A `RedisBackend` on the shared Redis under `namespace`, cleaned up after the test."""
    backend = RedisBackend(url=REDIS_URL, namespace=namespace)
    cleanups(lambda: delete_keys(namespace))
    cleanups(backend.close)
    return backend
