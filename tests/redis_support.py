"""How tests open a Redis broker under a key namespace of their own, and clean it up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from actors.brokers.redis import RedisBroker

REDIS_URL = "redis://127.0.0.1:6379/0"


def delete_namespace(namespace: str, url: str = REDIS_URL) -> int:
    """Delete every key under `namespace` (``<namespace>:*``); return how many."""
    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        return int(client.delete(*keys)) if keys else 0


def open_redis_broker(
    *,
    namespace: str,
    cleanups: Callable[[Callable[[], object]], None],
    url: str = REDIS_URL,
    **options: Any,
) -> RedisBroker:
    """A `RedisBroker` whose keys all live under `namespace`; closed and wiped after the test."""
    cleanups(lambda: delete_namespace(namespace, url))
    broker = RedisBroker(url=url, namespace=namespace, **options)
    cleanups(broker.close)
    return broker
