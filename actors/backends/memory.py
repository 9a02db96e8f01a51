"""An in-process backend, for tests and single-process workers (``memory://``)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence


class MemoryBackend:
    """Shared state kept in this process's memory; safe to use from any thread.

    Limits and results are shared by the threads and event loops of this process only: use
    `RedisBackend` when several processes or machines must see the same state.

    Args:
        clock: Monotonic seconds (default `time.monotonic`); injectable for tests.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._results: dict[str, tuple[bytes, float]] = {}  # id -> (payload, expires at)
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._slots: dict[str, dict[str, float]] = {}  # key -> holder -> expires at
        self._hits: dict[str, deque[float]] = {}
        self._statuses: dict[str, tuple[dict[str, str], float]] = {}  # id -> (fields, expires)
        self._keys: dict[str, tuple[str, float]] = {}  # key -> (value, expires at)
        self._sets: dict[str, tuple[set[str], float]] = {}  # key -> (members, expires at)
        self._logs: dict[str, dict[str, float]] = {}  # key -> member -> recorded at

    # -- results --------------------------------------------------------------------------------

    def put_result(self, message_id: str, payload: bytes, ttl: float) -> None:
        """Store `payload` for `ttl` seconds and wake every waiter."""
        with self._cond:
            self._results[message_id] = (payload, self._clock() + ttl)
            self._drop_expired_results()
            self._cond.notify_all()
            waiters = self._waiters.pop(message_id, [])
        for future in waiters:
            future.get_loop().call_soon_threadsafe(_resolve, future)

    def get_result(self, message_id: str) -> bytes | None:
        """Return the stored payload, or None."""
        with self._cond:
            return self._lookup(message_id)

    def wait_result(self, message_id: str, timeout: float) -> bytes | None:
        """Wait on a condition (no polling) until the payload is stored or `timeout` passes."""
        with self._cond:
            self._cond.wait_for(lambda: self._lookup(message_id) is not None, timeout)
            return self._lookup(message_id)

    async def wait_result_async(self, message_id: str, timeout: float) -> bytes | None:
        """Await a future resolved by `put_result` (no polling, no thread held)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._cond:
            found = self._lookup(message_id)
            if found is not None:
                return found
            self._waiters.setdefault(message_id, []).append(future)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            with self._cond:
                pending = self._waiters.get(message_id, [])
                if future in pending:
                    pending.remove(future)
        return self.get_result(message_id)

    def _lookup(self, message_id: str) -> bytes | None:
        entry = self._results.get(message_id)
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    def _drop_expired_results(self) -> None:
        now = self._clock()
        for message_id in [k for k, (_, expires) in self._results.items() if expires <= now]:
            del self._results[message_id]

    # -- concurrency slots ----------------------------------------------------------------------

    def acquire_slot(self, key: str, holder: str, limit: int, ttl: float) -> float:
        """Take a slot if fewer than `limit` unexpired slots are held under `key`."""
        with self._cond:
            now = self._clock()
            held = self._slots.setdefault(key, {})
            for expired in [h for h, expires in held.items() if expires <= now]:
                del held[expired]
            if len(held) < limit:
                held[holder] = now + ttl
                return 0.0
            return max(0.0, min(held.values()) - now)

    def refresh_slots(self, slots: Sequence[tuple[str, str]], ttl: float) -> None:
        """Extend the slots still held."""
        with self._cond:
            expires = self._clock() + ttl
            for key, holder in slots:
                held = self._slots.get(key)
                if held is not None and holder in held:
                    held[holder] = expires

    def release_slot(self, key: str, holder: str) -> None:
        """Free a slot."""
        with self._cond:
            held = self._slots.get(key)
            if held is not None:
                held.pop(holder, None)
                if not held:
                    del self._slots[key]

    # -- rate counter ---------------------------------------------------------------------------

    def hit_rate(self, key: str, limit: int, window: float) -> float:
        """Record a hit if fewer than `limit` fell in the last `window` seconds."""
        with self._cond:
            now = self._clock()
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) < limit:
                hits.append(now)
                return 0.0
            return max(0.0, hits[0] + window - now)

    # -- status hashes --------------------------------------------------------------------------

    def put_statuses(
        self,
        items: Sequence[tuple[str, Mapping[str, str]]],
        ttl: float,
        *,
        only_if_new: bool = False,
    ) -> None:
        """Merge fields into each message's status and restart its TTL."""
        with self._cond:
            now = self._clock()
            for message_id, fields in items:
                entry = self._statuses.get(message_id)
                current = entry[0] if entry is not None and entry[1] > now else None
                if current is not None and only_if_new:
                    continue
                self._statuses[message_id] = ({**(current or {}), **fields}, now + ttl)
            if len(self._statuses) % 1024 == 0:
                self._statuses = {k: v for k, v in self._statuses.items() if v[1] > now}

    def get_status(self, message_id: str) -> dict[str, str] | None:
        """Return a copy of the status fields, or None."""
        with self._cond:
            entry = self._statuses.get(message_id)
            if entry is None or entry[1] <= self._clock():
                return None
            return dict(entry[0])

    # -- keys -----------------------------------------------------------------------------------

    def set_key(
        self, key: str, value: str, ttl: float | None, *, only_if_absent: bool = False
    ) -> bool:
        """Store `value` under `key`, unless `only_if_absent` and it exists."""
        with self._cond:
            if only_if_absent and self._live_key(key) is not None:
                return False
            self._keys[key] = (value, float("inf") if ttl is None else self._clock() + ttl)
            return True

    def get_keys(self, keys: Sequence[str]) -> list[str | None]:
        """Return the values of `keys`."""
        with self._cond:
            return [self._live_key(key) for key in keys]

    def delete_key(self, key: str, *, if_value: str | None = None) -> bool:
        """Delete `key`, only while it holds `if_value` if given."""
        with self._cond:
            value = self._live_key(key)
            if value is None or (if_value is not None and value != if_value):
                return False
            del self._keys[key]
            return True

    def _live_key(self, key: str) -> str | None:
        entry = self._keys.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._keys[key]
            return None
        return entry[0]

    # -- event logs -----------------------------------------------------------------------------

    def record_event(self, key: str, member: str, ttl: float) -> None:
        """Record `member` now; forget entries older than `ttl`."""
        with self._cond:
            now = self._clock()
            log = self._logs.setdefault(key, {})
            log[member] = now
            for old in [m for m, at in log.items() if at < now - ttl]:
                del log[old]

    def events_since(self, key: str, since: float) -> list[tuple[str, float]]:
        """Return the entries recorded at or after `since`."""
        with self._cond:
            return [(m, at) for m, at in self._logs.get(key, {}).items() if at >= since]

    # -- member sets ----------------------------------------------------------------------------

    def add_member(self, key: str, member: str, ttl: float) -> tuple[bool, int]:
        """Add `member` to the set under `key`; say whether it was new and the set's size."""
        with self._cond:
            now = self._clock()
            entry = self._sets.get(key)
            members = entry[0] if entry is not None and entry[1] > now else set()
            added = member not in members
            members.add(member)
            self._sets[key] = (members, now + ttl)
            return added, len(members)

    def close(self) -> None:
        """Nothing to release."""


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
