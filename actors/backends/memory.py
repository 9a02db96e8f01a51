"""An in-process backend, for tests and single-process workers."""

from __future__ import annotations


class MemoryBackend:
    """Shared state kept in this process's memory."""

    def close(self) -> None:
        """Nothing to release."""
