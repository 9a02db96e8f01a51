"""Configuration from URLs and the environment; the only place that reads ``ACTORS_*``."""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from actors.errors import ConfigurationError

if TYPE_CHECKING:
    from actors.backends.base import Backend
    from actors.broker import Broker

ENV_BROKER_URL = "ACTORS_BROKER_URL"
ENV_BACKEND_URL = "ACTORS_BACKEND_URL"

# scheme -> (module, class, extra that provides its client library)
_BROKERS: dict[str, tuple[str, str, str | None]] = {
    "memory": ("actors.brokers.memory", "MemoryBroker", None),
    "amqp": ("actors.brokers.rabbitmq", "RabbitmqBroker", "rabbitmq"),
    "amqps": ("actors.brokers.rabbitmq", "RabbitmqBroker", "rabbitmq"),
    "redis": ("actors.brokers.redis", "RedisBroker", "redis"),
    "rediss": ("actors.brokers.redis", "RedisBroker", "redis"),
}

_BACKENDS: dict[str, tuple[str, str, str | None]] = {
    "memory": ("actors.backends.memory", "MemoryBackend", None),
    "redis": ("actors.backends.redis", "RedisBackend", "redis"),
    "rediss": ("actors.backends.redis", "RedisBackend", "redis"),
}


def env_broker_url() -> str | None:
    """Return ``ACTORS_BROKER_URL``, or None when unset or empty."""
    return os.environ.get(ENV_BROKER_URL) or None


def env_backend_url() -> str | None:
    """Return ``ACTORS_BACKEND_URL``, or None when unset or empty."""
    return os.environ.get(ENV_BACKEND_URL) or None


def broker_module(url: str) -> str | None:
    """Return the name of the module of the broker that `url` names (None: unknown scheme)."""
    entry = _BROKERS.get(urlsplit(url).scheme.lower())
    return entry[0] if entry else None


def broker_from_url(url: str, **options: Any) -> Broker:
    """Create the broker that `url` names (``amqp://``, ``redis://``, ``memory://`` ...).

    Raises:
        ConfigurationError: Unknown scheme, or the extra for it is not installed.
    """
    broker: Broker = _construct(_BROKERS, "broker", url, options)
    return broker


def backend_from_url(url: str, **options: Any) -> Backend:
    """Create the backend that `url` names (``redis://``, ``memory://``).

    Raises:
        ConfigurationError: Unknown scheme, or the extra for it is not installed.
    """
    backend: Backend = _construct(_BACKENDS, "backend", url, options)
    return backend


def _construct(
    table: dict[str, tuple[str, str, str | None]], kind: str, url: str, options: dict[str, Any]
) -> Any:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in table:
        known = ", ".join(f"{s}://" for s in table)
        raise ConfigurationError(f"unknown {kind} URL scheme in {url!r}; use one of {known}")
    module_name, class_name, extra = table[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if extra is None:
            raise
        raise ConfigurationError(
            f"{scheme}:// needs the {extra!r} extra: pip install 'actors-runtime[{extra}]' ({exc})"
        ) from exc
    cls = getattr(module, class_name)
    return cls() if scheme == "memory" else cls(url=url, **options)
