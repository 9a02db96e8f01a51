"""The one home of process state: declared actors, the broker and the backend.

The broker and the backend are resolved at first use, not at import, so that modules declaring
actors can be imported in any order. `reset()` returns the process to its initial state (tests).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from actors.errors import ActorNotFound, ConfigurationError

if TYPE_CHECKING:
    from actors.actor import Actor
    from actors.backends.base import Backend
    from actors.broker import Broker
    from actors.scheduler import Schedule

_lock = threading.Lock()
_actors: dict[str, Actor[Any, Any]] = {}
_broker: Broker | None = None
_backend: Backend | None = None
_schedules: dict[str, Schedule] = {}
# (broker, ACTORS_BACKEND_URL) for which `find_backend` found no backend: a process with
# RabbitMQ and no backend asks on every send, and need not look again until one changes.
_without_backend: tuple[Broker | None, str | None] | None = None


def declare_actor(actor: Actor[Any, Any]) -> None:
    """Record `actor` under its name.

    Raises:
        ConfigurationError: Another function is already declared under that name.
    """
    with _lock:
        existing = _actors.get(actor.actor_name)
        if existing is not None and existing.fn is not actor.fn:
            qualified = f"{existing.fn.__module__}.{existing.fn.__qualname__}"
            raise ConfigurationError(
                f"an actor named {actor.actor_name!r} is already declared ({qualified}); "
                "pass actor_name=... to give one of them another name"
            )
        _actors[actor.actor_name] = actor


def get_actor(name: str) -> Actor[Any, Any]:
    """Return the actor declared as `name`.

    Raises:
        ActorNotFound: No such actor in this process.
    """
    try:
        return _actors[name]
    except KeyError:
        raise ActorNotFound(name) from None


def find_actor(name: str) -> Actor[Any, Any] | None:
    """Return the actor declared as `name`, or None."""
    return _actors.get(name)


def declared_actors() -> dict[str, Actor[Any, Any]]:
    """Return a copy of every declared actor, by name."""
    return dict(_actors)


def declare_schedule(schedule: Schedule) -> None:
    """Record `schedule` under its name (replacing one of the same name)."""
    with _lock:
        _schedules[schedule.name] = schedule


def declared_schedules() -> dict[str, Schedule]:
    """Return a copy of the schedules declared with `actors.schedule`, by name."""
    return dict(_schedules)


def set_broker(broker: Broker) -> Broker:
    """Make `broker` the broker of this process; return it."""
    global _broker
    _broker = broker
    return broker


def get_broker() -> Broker:
    """Return the broker of this process, creating it from ``ACTORS_BROKER_URL`` if unset.

    Raises:
        ConfigurationError: No broker was set and ``ACTORS_BROKER_URL`` is not set either.
    """
    global _broker
    if _broker is None:
        from actors.settings import broker_from_url, env_broker_url

        with _lock:
            if _broker is None:
                url = env_broker_url()
                if url is None:
                    raise ConfigurationError(
                        "no broker configured: call actors.set_broker(...) or set "
                        "ACTORS_BROKER_URL (amqp://guest:guest@127.0.0.1:5672/, redis://..., "
                        "memory://)"
                    )
                _broker = broker_from_url(url)
    return _broker


def set_backend(backend: Backend) -> Backend:
    """Make `backend` the shared-state backend (results, limits, status); return it."""
    global _backend
    _backend = backend
    return backend


def get_backend() -> Backend:
    """Return the backend: the one set, else ``ACTORS_BACKEND_URL``, else the broker's default.

    Raises:
        ConfigurationError: None of these gives a backend.
    """
    global _backend
    if _backend is None:
        from actors.settings import backend_from_url, env_backend_url

        with _lock:
            if _backend is None:
                url = env_backend_url()
                _backend = backend_from_url(url) if url else None
        if _backend is None:
            backend = get_broker().default_backend()
            with _lock:
                _backend = _backend or backend
    return _backend


def find_backend() -> Backend | None:
    """Return the backend as `get_backend` does, or None where it would raise."""
    global _without_backend
    if _backend is not None:
        return _backend
    from actors.settings import env_backend_url

    url = env_backend_url()
    if _without_backend == (_broker, url):
        return None
    try:
        return get_backend()
    except ConfigurationError:
        _without_backend = (_broker, url)
        return None


def reset() -> None:
    """Forget every actor, schedule, the broker and the backend (for tests)."""
    global _broker, _backend, _without_backend
    with _lock:
        _actors.clear()
        _schedules.clear()
        _broker = None
        _backend = None
        _without_backend = None
