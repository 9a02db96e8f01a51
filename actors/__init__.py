"""actors: background work for Python, on RabbitMQ, Redis or memory.

Declare actors with `actor`, send them messages with `Actor.send`, run them with
``actors worker MODULE`` or `Worker`.
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actors.actor import Actor, actor
    from actors.broker import Broker
    from actors.cancel import cancel
    from actors.current import current_message
    from actors.errors import (
        ActorNotFound,
        ActorsError,
        BackendError,
        BrokerConnectionError,
        BrokerError,
        Cancelled,
        ConfigurationError,
        ConnectionClosed,
        ConnectionFailed,
        DecodeError,
        EncodingError,
        Fail,
        MessageTooLarge,
        PublishError,
        QueueConflict,
        QueueNotFound,
        RateLimitExceeded,
        ResultError,
        ResultFailure,
        ResultMissing,
        ResultTimeout,
        Retry,
        SkipMessage,
        StatusNotFound,
        TimeLimitExceeded,
        WorkerShutdown,
    )
    from actors.message import Message
    from actors.middleware import ConcurrencyLimiter, Middleware, RateLimiter, worker_is_stopping
    from actors.registry import get_backend, get_broker, set_backend, set_broker
    from actors.scheduler import Schedule, Scheduler, schedule
    from actors.status import MessageStatus, State, status
    from actors.worker import Worker
    from actors.workflows import Group, Pipeline, group, pipeline

    __version__: str

# Every public name, with the module it comes from: imported on first use (PEP 562), so that a
# process pays only for what it touches (a RabbitMQ worker does not load the scheduler, the
# supervisor does not load the worker).
_EXPORTS: dict[str, str] = {
    "Actor": "actors.actor",
    "actor": "actors.actor",
    "ActorNotFound": "actors.errors",
    "ActorsError": "actors.errors",
    "BackendError": "actors.errors",
    "Broker": "actors.broker",
    "BrokerConnectionError": "actors.errors",
    "BrokerError": "actors.errors",
    "cancel": "actors.cancel",
    "Cancelled": "actors.errors",
    "ConcurrencyLimiter": "actors.middleware",
    "ConfigurationError": "actors.errors",
    "ConnectionClosed": "actors.errors",
    "ConnectionFailed": "actors.errors",
    "current_message": "actors.current",
    "DecodeError": "actors.errors",
    "EncodingError": "actors.errors",
    "Fail": "actors.errors",
    "get_backend": "actors.registry",
    "get_broker": "actors.registry",
    "Group": "actors.workflows",
    "group": "actors.workflows",
    "Message": "actors.message",
    "MessageStatus": "actors.status",
    "MessageTooLarge": "actors.errors",
    "Middleware": "actors.middleware",
    "Pipeline": "actors.workflows",
    "pipeline": "actors.workflows",
    "PublishError": "actors.errors",
    "QueueConflict": "actors.errors",
    "QueueNotFound": "actors.errors",
    "RateLimiter": "actors.middleware",
    "RateLimitExceeded": "actors.errors",
    "ResultError": "actors.errors",
    "ResultFailure": "actors.errors",
    "ResultMissing": "actors.errors",
    "ResultTimeout": "actors.errors",
    "Retry": "actors.errors",
    "Schedule": "actors.scheduler",
    "schedule": "actors.scheduler",
    "Scheduler": "actors.scheduler",
    "set_backend": "actors.registry",
    "set_broker": "actors.registry",
    "SkipMessage": "actors.errors",
    "State": "actors.status",
    "status": "actors.status",
    "StatusNotFound": "actors.errors",
    "TimeLimitExceeded": "actors.errors",
    "Worker": "actors.worker",
    "worker_is_stopping": "actors.middleware",
    "WorkerShutdown": "actors.errors",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("actors-runtime")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0.0.0"


class _Package(types.ModuleType):
    """Keeps `actor`, `cancel` and `status` naming the functions once their modules load.

    Importing a submodule binds it on its package; for the three functions that share their
    module's name, that would hide the function (``actors.status`` would become the module).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


_SHADOWED = frozenset({"actor", "cancel", "status"})
sys.modules[__name__].__class__ = _Package

__all__ = [
    "Actor",
    "ActorNotFound",
    "ActorsError",
    "BackendError",
    "Broker",
    "BrokerConnectionError",
    "BrokerError",
    "Cancelled",
    "ConcurrencyLimiter",
    "ConfigurationError",
    "ConnectionClosed",
    "ConnectionFailed",
    "DecodeError",
    "EncodingError",
    "Fail",
    "Group",
    "Message",
    "MessageStatus",
    "MessageTooLarge",
    "Middleware",
    "Pipeline",
    "PublishError",
    "QueueConflict",
    "QueueNotFound",
    "RateLimitExceeded",
    "RateLimiter",
    "ResultError",
    "ResultFailure",
    "ResultMissing",
    "ResultTimeout",
    "Retry",
    "Schedule",
    "Scheduler",
    "SkipMessage",
    "State",
    "StatusNotFound",
    "TimeLimitExceeded",
    "Worker",
    "WorkerShutdown",
    "__version__",
    "actor",
    "cancel",
    "current_message",
    "get_backend",
    "get_broker",
    "group",
    "pipeline",
    "schedule",
    "set_backend",
    "set_broker",
    "status",
    "worker_is_stopping",
]
