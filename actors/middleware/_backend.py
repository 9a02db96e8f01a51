"""The backend as seen by middleware that only work when one is configured."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from actors import registry

if TYPE_CHECKING:
    from actors.backends.base import Backend

logger = logging.getLogger("actors.middleware")
_warned: set[str] = set()


def optional_backend(feature: str) -> Backend | None:
    """Return the process backend, or None (logged once per `feature`) if none is configured.

    Status tracking and cancellation checks are on by default; a process with a broker that
    has no default backend (RabbitMQ) and no ``set_backend`` simply goes without them.
    """
    backend = registry.find_backend()
    if backend is None and feature not in _warned:
        _warned.add(feature)
        # Expected with RabbitMQ alone, so not a warning: say once how to turn it on.
        logger.info(
            "%s is off: it needs a backend (actors.set_backend or ACTORS_BACKEND_URL)", feature
        )
    return backend
