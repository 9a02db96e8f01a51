"""The backend contract: shared state for results, limits, status and schedules."""

from __future__ import annotations

from typing import Protocol


class Backend(Protocol):
    """Shared state that the built-in middleware use; see RedisBackend and MemoryBackend."""

    def close(self) -> None:
        """Release connections."""
        ...
