"""Fixtures for backend tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from actors.backends.base import Backend
from actors.backends.memory import MemoryBackend
from tests.backends.support import open_redis_backend


@pytest.fixture(params=["memory", "redis"])
def any_backend(
    request: pytest.FixtureRequest, namespace: str, cleanups: Callable[[Callable[[], object]], None]
) -> Backend:
    """Each backend kind, isolated under `namespace`."""
    if request.param == "memory":
        return MemoryBackend()
    return open_redis_backend(namespace, cleanups)
