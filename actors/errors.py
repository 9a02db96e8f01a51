"""Every error and control-flow signal that `actors` raises.

The tree::

    ActorsError
    ├── ConfigurationError          unknown actor option, bad URL, missing extra
    ├── EncodingError               an argument the encoder cannot carry (names it)
    │   └── DecodeError             bytes that are not a valid message
    ├── ActorNotFound               a message names an actor this process does not know
    ├── BrokerError
    │   ├── BrokerConnectionError
    │   │   ├── ConnectionFailed    could not reach the broker within the wait
    │   │   └── ConnectionClosed    the connection dropped while in use
    │   ├── PublishError            the broker refused or could not route a message
    │   ├── QueueNotFound
    │   ├── QueueConflict           a queue exists with other arguments
    │   └── MessageTooLarge
    ├── BackendError                a backend (Redis) operation failed
    ├── StatusNotFound              no status is stored for a message id
    ├── ResultError
    │   ├── ResultMissing           the result expired or will never come
    │   ├── ResultTimeout           the wait ran out
    │   └── ResultFailure           the actor raised; carries the type and message
    └── RateLimitExceeded

Control-flow signals are not errors: `Retry` and `Fail` are raised by actors to ask for a later
run or an immediate dead-letter, `SkipMessage` by middleware. Interrupts (`TimeLimitExceeded`,
`Cancelled`) derive from `BaseException` so that a user's ``except Exception`` cannot swallow them.
"""

from __future__ import annotations

from datetime import timedelta


class ActorsError(Exception):
    """The root of every error raised by `actors`."""


class ConfigurationError(ActorsError):
    """Invalid configuration: an unknown actor option, a bad URL, a missing extra."""


class EncodingError(ActorsError):
    """A value could not be encoded; `argument` names the offending argument when known."""

    def __init__(self, message: str, *, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


class DecodeError(EncodingError):
    """Bytes taken from a broker are not a valid message."""


class ActorNotFound(ActorsError):
    """A message names an actor that is not declared in this process."""

    def __init__(self, actor: str) -> None:
        super().__init__(f"no actor named {actor!r} is declared in this process")
        self.actor = actor


class BrokerError(ActorsError):
    """A broker operation failed."""


class BrokerConnectionError(BrokerError):
    """The broker could not be reached or the connection was lost."""


class ConnectionFailed(BrokerConnectionError):
    """The broker did not answer within the configured wait."""


class ConnectionClosed(BrokerConnectionError):
    """The connection to the broker closed while it was in use."""


class PublishError(BrokerError):
    """The broker refused a message (nack) or could not route it."""

    def __init__(self, message: str, *, message_id: str | None = None) -> None:
        super().__init__(message)
        self.message_id = message_id


class QueueNotFound(BrokerError):
    """The named queue does not exist."""

    def __init__(self, queue: str) -> None:
        super().__init__(f"queue {queue!r} does not exist")
        self.queue = queue


class QueueConflict(BrokerError):
    """A queue already exists with arguments other than the ones asked for."""

    def __init__(self, queue: str, detail: str, *, argument: str | None = None) -> None:
        super().__init__(f"queue {queue!r} exists with other arguments: {detail}")
        self.queue = queue
        self.detail = detail
        self.argument = argument


class MessageTooLarge(BrokerError):
    """An encoded message exceeds the configured maximum size."""

    def __init__(self, size: int, limit: int, *, message_id: str | None = None) -> None:
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit
        self.message_id = message_id


class BackendError(ActorsError):
    """A shared-state backend (results, limits) could not be reached or refused a command."""


class ResultError(ActorsError):
    """A result could not be returned."""


class ResultMissing(ResultError):
    """No result is stored for the message: it expired, or the actor does not store results."""


class ResultTimeout(ResultError):
    """The wait for a result ran out before the result arrived."""


class ResultFailure(ResultError):
    """The actor failed; `error_type` and `error_message` describe its exception."""

    def __init__(self, error_type: str, error_message: str, *, message_id: str = "") -> None:
        super().__init__(f"{error_type}: {error_message}")
        self.error_type = error_type
        self.error_message = error_message
        self.message_id = message_id


class RateLimitExceeded(ActorsError):
    """A limiter had no slot free; `retry_after` is the expected wait in seconds."""

    def __init__(self, key: str, retry_after: float) -> None:
        super().__init__(f"rate limit {key!r} exceeded; retry in {retry_after:.3f}s")
        self.key = key
        self.retry_after = retry_after


class Retry(Exception):
    """Raised by an actor to ask for another run after `delay` seconds.

    Logged as a retry, not as an error. Counts against ``max_retries``.
    """

    def __init__(self, delay: float | timedelta | None = None, reason: str = "") -> None:
        super().__init__(reason or "retry requested")
        self.delay = delay.total_seconds() if isinstance(delay, timedelta) else delay


class Fail(Exception):
    """Raised by an actor to dead-letter its message at once, without retries."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SkipMessage(Exception):
    """Raised by middleware in ``before_process_message`` to skip the actor.

    The message is acknowledged and not run; ``after_skip_message`` hooks are called.
    """


class TimeLimitExceeded(BaseException):
    """Raised inside an actor that ran past its ``time_limit``."""

    def __init__(self, *args: object) -> None:
        # raised into a thread by type alone, so the default text says what happened
        super().__init__(*(args or ("the actor ran past its time_limit",)))


class Cancelled(BaseException):
    """Raised inside a sync actor whose message was cancelled."""


class WorkerShutdown(BaseException):
    """Raised inside a sync actor when its worker is stopping and asked actors to stop."""


class StatusNotFound(ActorsError):
    """No status is stored for the message: unknown id, expired, or status tracking is off."""

    def __init__(self, message_id: str) -> None:
        super().__init__(f"no status stored for message {message_id}")
        self.message_id = message_id
