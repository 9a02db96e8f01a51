"""One delivery of a message to a worker, and what becomes of it."""

from __future__ import annotations

import enum
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from actors import names
from actors.encoding import iso_time

if TYPE_CHECKING:
    from actors.actor import Actor
    from actors.message import Message


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a message is dead-lettered; written into the dead letter's headers.

    Attributes:
        reason: A short code: ``failed``, ``max-retries``, ``non-retryable``, ``decode-error``,
            ``unknown-actor``, ``max-age``, ``poison``, ``time-limit`` ...
        error_type: The exception's class name, if an exception caused it.
        error_message: The exception's text, truncated.
        failed_at: When, in Unix seconds.
    """

    reason: str
    error_type: str = ""
    error_message: str = ""
    failed_at: float = field(default_factory=time.time)

    @classmethod
    def from_exception(cls, reason: str, exception: BaseException) -> Failure:
        """Describe `exception` as the cause of a dead letter."""
        text = str(exception)[: names.ERROR_TEXT_LIMIT]
        return cls(reason, type(exception).__name__, text)

    def headers(self) -> dict[str, str]:
        """Return the readable dead-letter headers for this failure."""
        return {
            names.HEADER_DEAD_REASON: self.reason,
            names.HEADER_ERROR_TYPE: self.error_type,
            names.HEADER_ERROR: self.error_message,
            names.HEADER_FAILED_AT: iso_time(self.failed_at),
        }


class Outcome(enum.Enum):
    """What the worker does with a delivery once the actor and the hooks ran."""

    ACK = "ack"
    RETRY = "retry"  # enqueue the next attempt with a delay (counts a retry), then ack
    DEFER = "defer"  # enqueue the same attempt with a delay (counts no retry), then ack
    DEAD_LETTER = "dead-letter"


class Delivery(ABC):
    """A message as taken from a queue by a worker, until it is settled.

    Middleware decide the outcome with `retry_in`, `defer` and `reject`; the worker then
    settles the delivery once with `ack`, `dead_letter` or `requeue`, which each broker
    implements. Settling is safe from any thread.

    Attributes:
        queue: The queue it came from.
        body: The raw body.
        headers: The raw headers.
        redelivered: True if the broker delivered it before (first delivery is guaranteed
            False on RabbitMQ).
        message: The decoded message, set by the worker (None if it could not be decoded).
        actor: The actor that runs it, set by the worker.
    """

    __slots__ = (
        "_delay",
        "_failure",
        "_outcome",
        "actor",
        "body",
        "headers",
        "message",
        "queue",
        "redelivered",
        "settling",
    )

    def __init__(
        self, queue: str, body: bytes, headers: dict[str, Any], *, redelivered: bool
    ) -> None:
        self.queue = queue
        self.body = body
        self.headers = headers
        self.redelivered = redelivered
        self.message: Message[Any] | None = None
        self.actor: Actor[Any, Any] | None = None
        self._outcome = Outcome.ACK
        self._delay = 0.0
        self._failure: Failure | None = None
        #: Set by the worker when it starts settling; a delivery is settled at most once.
        self.settling = False

    @property
    def message_id(self) -> str:
        """The message id, from the decoded message or, failing that, the headers."""
        if self.message is not None:
            return self.message.id
        return str(self.headers.get(names.HEADER_ID, "?"))

    @property
    def label(self) -> str:
        """``actor[id]`` for log lines, from the message or, failing that, the headers."""
        if self.message is not None:
            return f"{self.message.actor}[{self.message.id}]"
        return f"{self.headers.get(names.HEADER_ACTOR, '?')}[{self.message_id}]"

    @property
    def deliveries(self) -> int:
        """How many times this message was delivered, this time included (as far as known)."""
        counted = self.headers.get(names.HEADER_DELIVERIES)
        try:
            return int(counted) + 1 if isinstance(counted, int | str | bytes) else 1
        except ValueError:  # a foreign producer's garbage: count this delivery only
            return 1

    def option(self, name: str, default: Any = None) -> Any:
        """Return an option: the message's own, else the actor's, else `default`."""
        if self.message is not None and name in self.message.options:
            return self.message.options[name]
        if self.actor is not None:
            return self.actor.options.get(name, default)
        return default

    # -- decisions (middleware) -----------------------------------------------------------------

    @property
    def outcome(self) -> Outcome:
        """What the worker will do with this delivery."""
        return self._outcome

    @property
    def delay(self) -> float:
        """The delay in seconds of a RETRY or DEFER outcome."""
        return self._delay

    @property
    def failure(self) -> Failure | None:
        """Why the delivery will be dead-lettered, if it will."""
        return self._failure

    def retry_in(self, delay: float) -> None:
        """Run the message again after `delay` seconds, counting one more retry."""
        self._outcome, self._delay = Outcome.RETRY, max(0.0, delay)

    def defer(self, delay: float) -> None:
        """Put the message back for `delay` seconds without counting a retry (rate limits)."""
        self._outcome, self._delay = Outcome.DEFER, max(0.0, delay)

    def reject(self, failure: Failure) -> None:
        """Dead-letter the message with `failure` as the reason."""
        self._outcome, self._failure = Outcome.DEAD_LETTER, failure

    # -- settlement (brokers) -------------------------------------------------------------------

    @abstractmethod
    def ack(self) -> None:
        """Tell the broker the message is done with; it will not be delivered again."""

    @abstractmethod
    def dead_letter(self, failure: Failure) -> None:
        """Move the message to its queue's DLQ with `failure` in its headers, then ack it."""

    @abstractmethod
    def requeue(self) -> None:
        """Give the message back to its queue, to be delivered again (shutdown, poison guard)."""
