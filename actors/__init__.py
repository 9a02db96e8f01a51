"""actors: background work for Python, on RabbitMQ, Redis or memory.

Declare actors with `actor`, send them messages with `Actor.send`, run them with
``actors worker MODULE`` or `Worker`.
"""

from importlib.metadata import PackageNotFoundError, version

from actors.actor import Actor, actor
from actors.broker import Broker
from actors.current import current_message
from actors.errors import (
    ActorNotFound,
    ActorsError,
    BackendError,
    BrokerConnectionError,
    BrokerError,
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
    TimeLimitExceeded,
    WorkerShutdown,
)
from actors.message import Message
from actors.middleware import ConcurrencyLimiter, Middleware, RateLimiter, worker_is_stopping
from actors.registry import get_backend, get_broker, set_backend, set_broker
from actors.worker import Worker

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
    "ConcurrencyLimiter",
    "ConfigurationError",
    "ConnectionClosed",
    "ConnectionFailed",
    "DecodeError",
    "EncodingError",
    "Fail",
    "Message",
    "MessageTooLarge",
    "Middleware",
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
    "SkipMessage",
    "TimeLimitExceeded",
    "Worker",
    "WorkerShutdown",
    "__version__",
    "actor",
    "current_message",
    "get_backend",
    "get_broker",
    "set_backend",
    "set_broker",
    "worker_is_stopping",
]
