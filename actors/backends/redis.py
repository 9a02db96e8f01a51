"""The Redis backend (``redis://``): results and limits shared by every process and machine.

Keys are ``<namespace>:<prefix><id>`` with the prefixes of `actors.names`. Check-then-write
operations run as Lua scripts, and they read the clock with Redis ``TIME``, so that workers on
machines with skewed clocks still agree on windows and expiries.

- A result is a one-element list. Waiting is ``BLMOVE key key``: it blocks on the server
  until the list exists, then rotates the single element in place, so every waiter is woken
  and the result stays for the others (no polling, no pub/sub race).
- Concurrency slots are a sorted set of holder tokens scored by expiry (Unix ms).
- The rate counter is a sorted set of hit times over a sliding window.
- A message's status is a hash; generic keys (cancel marks, leases, unique locks) are strings;
  a group's finished members are a set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack

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


# KEYS[1] status hash; ARGV ttl ms, field, value, ... -> 1 if written, 0 if it existed.
_PUT_NEW_STATUS = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

# KEYS[1] an event log; ARGV member, ttl ms.
_RECORD_EVENT = (
    _NOW_MS
    + """
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
"""
)

# KEYS: status hashes; ARGV[1] TTL in ms; ARGV[2] msgpack array of flat field lists, one per
# key. One command for a whole batch: the client encodes one blob instead of two commands per
# message.
_PUT_STATUSES = """
local fields = cmsgpack.unpack(ARGV[2])
for i, key in ipairs(KEYS) do
    redis.call('HSET', key, unpack(fields[i]))
    redis.call('PEXPIRE', key, ARGV[1])
end
return #KEYS
"""

# KEYS[1] a key; ARGV[1] the value it must hold -> 1 if deleted.
_DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


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
        self._put_new_status = self._client.register_script(_PUT_NEW_STATUS)
        self._put_statuses = self._client.register_script(_PUT_STATUSES)
        self._delete_if = self._client.register_script(_DELETE_IF)
        self._record = self._client.register_script(_RECORD_EVENT)

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

    # -- status hashes --------------------------------------------------------------------------

    def put_statuses(
        self,
        items: Sequence[tuple[str, Mapping[str, str]]],
        ttl: float,
        *,
        only_if_new: bool = False,
    ) -> None:
        """Merge fields into each status hash and set its TTL, in one round trip."""
        if not items:
            return
        if only_if_new and len(items) == 1:  # one EVALSHA: a pipeline would add SCRIPT EXISTS
            [(message_id, fields)] = items
            flat = [part for pair in fields.items() for part in pair]
            key = self.key(names.STATUS_KEY_PREFIX, message_id)
            self._script(self._put_new_status, [key], [_ms(ttl), *flat])
            return
        keys = [self.key(names.STATUS_KEY_PREFIX, message_id) for message_id, _ in items]
        flats = [[part for pair in fields.items() for part in pair] for _, fields in items]
        if not only_if_new:
            blob = msgpack.packb(flats, use_bin_type=True)
            self._script(self._put_statuses, keys, [_ms(ttl), blob])
            return
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for key, flat in zip(keys, flats, strict=True):
                    self._put_new_status(keys=[key], args=[_ms(ttl), *flat], client=pipe)
                pipe.execute()
        except redis.RedisError as exc:
            raise BackendError(f"could not write the status of {items[0][0]}: {exc}") from exc

    def get_status(self, message_id: str) -> dict[str, str] | None:
        """Return the status hash, or None."""
        try:
            found = self._client.hgetall(self.key(names.STATUS_KEY_PREFIX, message_id))
        except redis.RedisError as exc:
            raise BackendError(f"could not read the status of {message_id}: {exc}") from exc
        return {_text(k): _text(v) for k, v in found.items()} or None

    # -- keys -----------------------------------------------------------------------------------

    def set_key(
        self, key: str, value: str, ttl: float | None, *, only_if_absent: bool = False
    ) -> bool:
        """``SET key value [PX ttl] [NX]``."""
        px = None if ttl is None else _ms(ttl)
        try:
            done = self._client.set(self.key("", key), value, px=px, nx=only_if_absent)
        except redis.RedisError as exc:
            raise BackendError(f"could not set {key!r}: {exc}") from exc
        return bool(done)

    def get_keys(self, keys: Sequence[str]) -> list[str | None]:
        """``MGET`` the keys in one round trip."""
        if not keys:
            return []
        try:
            found = self._client.mget([self.key("", key) for key in keys])
        except redis.RedisError as exc:
            raise BackendError(f"could not read {keys[0]!r}: {exc}") from exc
        return [None if value is None else _text(value) for value in found]

    def delete_key(self, key: str, *, if_value: str | None = None) -> bool:
        """``DEL`` the key, or compare-and-delete when `if_value` is given."""
        full = self.key("", key)
        if if_value is not None:
            return self._script(self._delete_if, [full], [if_value]) == 1
        try:
            return bool(self._client.delete(full))
        except redis.RedisError as exc:
            raise BackendError(f"could not delete {key!r}: {exc}") from exc

    # -- event logs -----------------------------------------------------------------------------

    def record_event(self, key: str, member: str, ttl: float) -> None:
        """``ZADD`` at the server's time (Lua ``TIME``), trimming entries older than `ttl`."""
        self._script(self._record, [self.key("", key)], [member, _ms(ttl)])

    def events_since(self, key: str, since: float) -> list[tuple[str, float]]:
        """``ZRANGEBYSCORE key since +inf WITHSCORES`` (scores are Unix ms)."""
        try:
            found = self._client.zrangebyscore(
                self.key("", key), max(0, int(since * 1000)), "+inf", withscores=True
            )
        except redis.RedisError as exc:
            raise BackendError(f"could not read {key!r}: {exc}") from exc
        entries: list[tuple[bytes, float]] = found  # type: ignore[assignment]
        return [(_text(member), score / 1000) for member, score in entries]

    # -- member sets ----------------------------------------------------------------------------

    def add_member(self, key: str, member: str, ttl: float) -> tuple[bool, int]:
        """``SADD`` + ``SCARD`` + ``PEXPIRE`` in one transaction."""
        full = self.key("", key)
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.sadd(full, member)
                pipe.scard(full)
                pipe.pexpire(full, _ms(ttl))
                added, size, _ = pipe.execute()
        except redis.RedisError as exc:
            raise BackendError(f"could not add to {key!r}: {exc}") from exc
        return bool(added), int(size)

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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
