"""actors: background work for Python, on RabbitMQ, Redis or memory.

Declare actors with `actor`, send them messages with `Actor.send`, run them with
``actors worker MODULE`` or `Worker`.
"""

from importlib.metadata import PackageNotFoundError, version

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

try:
    __version__ = version("actors-runtime")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

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
