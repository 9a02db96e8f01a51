"""The Redis backend (``redis://``): results and limits shared by every process and machine.

Keys are ``<namespace>:<prefix><id>`` with the prefixes of `actors.names`. Check-then-write
operations run as Lua scripts, and they read the clock with Redis ``TIME``, so that workers on
machines with skewed clocks still agree on windows and expiries.

- A result is a one-element list. Waiting is ``BLMOVE key key``: it blocks on the server
  until the list exists, then rotates the single element in place, so every waiter is woken
  and the result stays for the others (no polling, no pub/sub race).
- Concurrency slots are a sorted set of holder tokens scored by expiry (Unix ms).
- The rate counter is a sorted set of hit times over a sliding window.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from actors import names
from actors.errors import BackendError, ConfigurationError

try:
    import redis
    import redis.asyncio as redis_async
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigurationError(
        "RedisBackend needs the 'redis' extra: pip install 'actors-runtime[redis]'"
    ) from exc

_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "

# KEYS[1] slots; ARGV holder, limit, ttl ms -> 0 if taken, else ms until the first expiry.
_ACQUIRE_SLOT = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[1], last[2])
  return 0
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(first[2]) - now)
"""
)

# KEYS slot keys; ARGV[1] ttl ms, ARGV[1 + i] the holder under KEYS[i].
_REFRESH_SLOTS = (
    _NOW_MS
    + """
local expires = now + tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  if redis.call('ZADD', key, 'XX', 'CH', expires, ARGV[i + 1]) == 1 then
    local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    redis.call('PEXPIREAT', key, last[2])
  end
end
return 0
"""
)

# KEYS[1] hits; ARGV limit, window ms, unique member -> 0 if recorded, else ms to wait.
_HIT_RATE = (
    _NOW_MS
    + """
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(first[2]) + window - now)
"""
)


class RedisBackend:
    """Shared state in Redis, for workers spread over processes and machines.

    The constructor does no I/O; the connection opens at first use.

    Args:
        url: ``redis://[:password@]host[:port][/db]`` (or ``rediss://``).
        namespace: The first part of every key (default ``actors``); tests use one per test.
        **options: Passed to `redis.Redis.from_url` (``socket_connect_timeout`` ...); keep
            ``socket_timeout`` unset or longer than the longest result wait.
    """

    def __init__(
        self,
        *,
        url: str = "redis://127.0.0.1:6379/0",
        namespace: str = names.BACKEND_NAMESPACE,
        **options: Any,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self._options = options
        self._client = redis.Redis.from_url(url, **options)
        self._acquire = self._client.register_script(_ACQUIRE_SLOT)
        self._refresh = self._client.register_script(_REFRESH_SLOTS)
        self._hit = self._client.register_script(_HIT_RATE)

    def key(self, prefix: str, name: str) -> str:
        """Return the full Redis key for `name` under `prefix` (a constant of `actors.names`)."""
        return f"{self.namespace}:{prefix}{name}"

    # -- results --------------------------------------------------------------------------------

    def put_result(self, message_id: str, payload: bytes, ttl: float) -> None:
        """Store `payload` (replacing any) for `ttl` seconds, waking every waiter."""
        key = self.key(names.RESULT_KEY_PREFIX, message_id)
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.rpush(key, payload)
                pipe.pexpire(key, _ms(ttl))
                pipe.execute()
        except redis.RedisError as exc:
            raise BackendError(f"could not store the result of {message_id}: {exc}") from exc

    def get_result(self, message_id: str) -> bytes | None:
        """Return the stored payload, or None."""
        try:
            found = self._client.lindex(self.key(names.RESULT_KEY_PREFIX, message_id), 0)
        except redis.RedisError as exc:
            raise BackendError(f"could not read the result of {message_id}: {exc}") from exc
        return _payload(found)

    def wait_result(self, message_id: str, timeout: float) -> bytes | None:
        """Block on the server (``BLMOVE``) until the payload is stored or `timeout` passes.

        The stubs type the timeout as int; Redis 6+ takes fractional seconds.
        """
        if timeout <= 0:  # BLMOVE treats 0 as "forever"
            return self.get_result(message_id)
        key = self.key(names.RESULT_KEY_PREFIX, message_id)
        try:
            found = self._client.blmove(key, key, timeout, "LEFT", "LEFT")  # type: ignore[arg-type]
        except redis.RedisError as exc:
            raise BackendError(f"could not wait for the result of {message_id}: {exc}") from exc
        return _payload(found)

    async def wait_result_async(self, message_id: str, timeout: float) -> bytes | None:
        """Like `wait_result`, on an asyncio connection of its own."""
        if timeout <= 0:
            return self.get_result(message_id)
        key = self.key(names.RESULT_KEY_PREFIX, message_id)
        client = redis_async.Redis.from_url(self.url, **self._options)
        try:
            found = await client.blmove(key, key, timeout, "LEFT", "LEFT")  # type: ignore[arg-type]
        except redis.RedisError as exc:
            raise BackendError(f"could not wait for the result of {message_id}: {exc}") from exc
        finally:
            await client.aclose()
        return _payload(found)

    # -- concurrency slots ----------------------------------------------------------------------

    def acquire_slot(self, key: str, holder: str, limit: int, ttl: float) -> float:
        """Take a slot if fewer than `limit` unexpired slots are held under `key`."""
        wait = self._script(self._acquire, [self.key(names.SLOTS_KEY_PREFIX, key)],
                            [holder, limit, _ms(ttl)])  # fmt: skip
        return wait / 1000

    def refresh_slots(self, slots: Sequence[tuple[str, str]], ttl: float) -> None:
        """Extend the slots still held, in one round trip."""
        if slots:
            keys = [self.key(names.SLOTS_KEY_PREFIX, key) for key, _ in slots]
            self._script(self._refresh, keys, [_ms(ttl), *(holder for _, holder in slots)])

    def release_slot(self, key: str, holder: str) -> None:
        """Free a slot."""
        try:
            self._client.zrem(self.key(names.SLOTS_KEY_PREFIX, key), holder)
        except redis.RedisError as exc:
            raise BackendError(f"could not release a slot of {key!r}: {exc}") from exc

    # -- rate counter ---------------------------------------------------------------------------

    def hit_rate(self, key: str, limit: int, window: float) -> float:
        """Record a hit if fewer than `limit` fell in the last `window` seconds."""
        wait = self._script(self._hit, [self.key(names.RATE_KEY_PREFIX, key)],
                            [limit, _ms(window), os.urandom(8).hex()])  # fmt: skip
        return wait / 1000

    def _script(self, script: Any, keys: list[str], args: list[Any]) -> int:
        try:
            return int(script(keys=keys, args=args))
        except redis.RedisError as exc:
            raise BackendError(f"backend script failed on {keys[0]}: {exc}") from exc

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def _payload(found: bytes | str | None) -> bytes | None:
    return found.encode() if isinstance(found, str) else found


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
