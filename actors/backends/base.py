"""The backend contract: shared state for results, limits, status and schedules.

A backend is a small set of primitives that the built-in middleware build on. Each group is
documented with the guarantee it must give, so that a new backend (or a later feature adding
its own group) knows what to keep:

Results
    `put_result` stores an opaque payload under a message id with a TTL; `get_result` reads it
    without waiting; `wait_result` / `wait_result_async` block until it is stored or the timeout
    runs out, *without polling* (Redis: a blocking list command; memory: a condition).

Concurrency slots
    `acquire_slot` takes one of `limit` slots under a key for a holder token, for `ttl`
    seconds; `refresh_slots` extends slots that are still held; `release_slot` frees one. A slot
    whose holder died (and so stopped refreshing) expires after its TTL.

Rate counter
    `hit_rate` records one acquisition in a sliding window of `window` seconds if fewer than
    `limit` were recorded in the last `window` seconds, and otherwise says how long until one
    frees up.

Status hashes
    `put_statuses` merges string fields into the hash of each message id and sets its TTL, in
    one round trip; with ``only_if_new`` a hash that already exists is left alone (so a late
    "queued" write never overwrites "running"). `get_status` reads one hash.

Keys
    `set_key` stores a string under a key, optionally only if the key is absent (a lease or a
    lock: ``SET NX PX``), with a TTL or none; `get_keys` reads many keys in one round trip;
    `delete_key` deletes one, optionally only while it still holds a given value (so a lock is
    released only by its holder).

Event logs
    `record_event` appends a member to a log scored by the backend's clock and drops entries
    older than `ttl`; `events_since` returns the entries scored at or after a point, so that
    a reader can follow the log with one read per poll (cancellations).

Member sets
    `add_member` adds a member to a set and tells, atomically, whether it was new and how many
    members the set now has (group completion: the one who adds the last member knows it).

Durations are seconds. Every operation is atomic with respect to other processes using the
same backend: check-then-write sequences run server-side (Lua on Redis, a lock in memory).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class Backend(Protocol):
    """Shared state that the built-in middleware use; see RedisBackend and MemoryBackend."""

    # -- results --------------------------------------------------------------------------------

    def put_result(self, message_id: str, payload: bytes, ttl: float) -> None:
        """Store `payload` as the result of `message_id` for `ttl` seconds (replacing any)."""
        ...

    def get_result(self, message_id: str) -> bytes | None:
        """Return the stored payload of `message_id`, or None if there is none (yet)."""
        ...

    def wait_result(self, message_id: str, timeout: float) -> bytes | None:
        """Block until the payload of `message_id` is stored; None after `timeout` seconds."""
        ...

    async def wait_result_async(self, message_id: str, timeout: float) -> bytes | None:
        """Like `wait_result`, without blocking the event loop."""
        ...

    # -- concurrency slots ----------------------------------------------------------------------

    def acquire_slot(self, key: str, holder: str, limit: int, ttl: float) -> float:
        """Take a slot under `key` for `holder` if fewer than `limit` are held.

        Returns:
            0.0 if the slot was taken; otherwise the seconds until the earliest held slot
            expires (an upper bound on the wait if no holder releases early).
        """
        ...

    def refresh_slots(self, slots: Sequence[tuple[str, str]], ttl: float) -> None:
        """Extend the (key, holder) slots that are still held to expire `ttl` seconds from now."""
        ...

    def release_slot(self, key: str, holder: str) -> None:
        """Free the slot of `holder` under `key` (nothing happens if it already expired)."""
        ...

    # -- rate counter ---------------------------------------------------------------------------

    def hit_rate(self, key: str, limit: int, window: float) -> float:
        """Record one hit under `key` if fewer than `limit` hits fell in the last `window` s.

        Returns:
            0.0 if the hit was recorded; otherwise the seconds until the oldest hit in the
            window leaves it.
        """
        ...

    # -- status hashes --------------------------------------------------------------------------

    def put_statuses(
        self,
        items: Sequence[tuple[str, Mapping[str, str]]],
        ttl: float,
        *,
        only_if_new: bool = False,
    ) -> None:
        """Merge the fields of each ``(message_id, fields)`` into its hash, kept `ttl` seconds.

        With `only_if_new`, a message whose hash exists already is skipped.
        """
        ...

    def get_status(self, message_id: str) -> dict[str, str] | None:
        """Return the status hash of `message_id`, or None if there is none."""
        ...

    # -- keys -----------------------------------------------------------------------------------

    def set_key(
        self, key: str, value: str, ttl: float | None, *, only_if_absent: bool = False
    ) -> bool:
        """Store `value` under `key` for `ttl` seconds (None: no expiry).

        Returns:
            False if `only_if_absent` and the key exists (nothing written), else True.
        """
        ...

    def get_keys(self, keys: Sequence[str]) -> list[str | None]:
        """Return the values of `keys`, in order, None for a missing key."""
        ...

    def delete_key(self, key: str, *, if_value: str | None = None) -> bool:
        """Delete `key` (only while it holds `if_value`, if given); return True if deleted."""
        ...

    # -- event logs -----------------------------------------------------------------------------

    def record_event(self, key: str, member: str, ttl: float) -> None:
        """Add `member` to the log `key` at the backend's current time; keep `ttl` seconds."""
        ...

    def events_since(self, key: str, since: float) -> list[tuple[str, float]]:
        """Return the ``(member, time)`` entries of log `key` recorded at or after `since`.

        Times are the backend's clock in seconds; pass the latest time seen to read on.
        """
        ...

    # -- member sets ----------------------------------------------------------------------------

    def add_member(self, key: str, member: str, ttl: float) -> tuple[bool, int]:
        """Add `member` to the set `key` (kept `ttl` seconds), atomically.

        Returns:
            Whether `member` was new, and how many members the set holds now.
        """
        ...

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Release connections."""
        ...
