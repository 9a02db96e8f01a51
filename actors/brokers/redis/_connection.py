"""Redis clients for the broker, and the boundary where redis-py errors become ours."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from actors.errors import BrokerError, ConnectionFailed

logger = logging.getLogger("actors.brokers.redis")

T = TypeVar("T")

#: redis-py errors that mean "the connection is gone or stalled", worth a retry.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)


def open_client(url: str, *, name: str, socket_timeout: float) -> redis.Redis:
    """A client on `url` that does not retry by itself (the broker decides how to retry)."""
    return redis.Redis.from_url(
        url,
        client_name=name,
        socket_timeout=socket_timeout,
        socket_connect_timeout=min(socket_timeout, 5.0),
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
        protocol=2,  # the same reply shapes on every redis-py version we support
    )


def call_with_deadline(call: Callable[[], T], *, timeout: float, what: str) -> T:
    """Run `call`, retrying lost connections with backoff for up to `timeout` seconds.

    Raises:
        ConnectionFailed: Redis could not be reached within `timeout` seconds.
        BrokerError: Redis refused the command.
    """
    deadline = time.monotonic() + timeout
    pause = 0.05
    while True:
        try:
            return call()
        except redis.AuthenticationError as exc:
            raise ConnectionFailed(f"Redis refused the credentials ({what}): {exc}") from exc
        except CONNECTION_ERRORS as exc:
            if time.monotonic() + pause >= deadline:
                raise ConnectionFailed(
                    f"Redis unreachable for {timeout:g}s while trying to {what}: {exc}"
                ) from exc
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
        except redis.RedisError as exc:
            raise BrokerError(f"Redis refused to {what}: {exc}") from exc


class Backoff:
    """Growing pauses with jitter between reconnection attempts (0.1 s up to 5 s)."""

    def __init__(self, first: float = 0.1, most: float = 5.0) -> None:
        self._first = first
        self._most = most
        self._next = first

    def pause(self) -> float:
        """Return the next pause in seconds, and grow the one after it."""
        pause = self._next * random.uniform(0.5, 1.0)
        self._next = min(self._next * 2, self._most)
        return pause

    def reset(self) -> None:
        """Start again from the shortest pause (after a success)."""
        self._next = self._first


def where(url: str) -> str:
    """Describe `url` for logs without its credentials (``host:port/db``)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"


def check_durability(client: redis.Redis, url: str) -> bool:
    """Log a loud warning if Redis may lose queued messages (no AOF, or eviction allowed).

    Returns:
        Whether the settings could be read (False: Redis unreachable or INFO refused).
    """
    try:
        pipe = client.pipeline(transaction=False)
        pipe.info("persistence")
        pipe.info("memory")
        persistence, memory = pipe.execute()
    except redis.RedisError as exc:
        logger.info("could not check the durability settings of %s: %s", where(url), exc)
        return False
    if not persistence.get("aof_enabled"):
        logger.warning(
            "Redis at %s runs without appendonly: queued messages are lost if it crashes or "
            "restarts between snapshots. Set 'appendonly yes' (see docs/redis.md).",
            where(url),
        )
    policy = memory.get("maxmemory_policy", "noeviction")
    if policy != "noeviction":
        logger.warning(
            "Redis at %s has maxmemory-policy %s: it may evict queued messages when full. "
            "Set 'maxmemory-policy noeviction' (see docs/redis.md).",
            where(url),
            policy,
        )
    return True
