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

Durations are seconds. Every operation is atomic with respect to other processes using the
same backend: check-then-write sequences run server-side (Lua on Redis, a lock in memory).
"""

from __future__ import annotations

from collections.abc import Sequence
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

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Release connections."""
        ...
