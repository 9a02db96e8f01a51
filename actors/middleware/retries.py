"""Retries: failed messages run again later, through the broker's delay path."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from actors.delivery import Failure, Outcome
from actors.errors import Fail, Retry
from actors.middleware._options import seconds
from actors.middleware.base import Middleware

if TYPE_CHECKING:
    from actors.broker import Broker
    from actors.delivery import Delivery

RetryWhen = Callable[[int, BaseException], bool]

DEFAULT_MAX_RETRIES = 20
DEFAULT_MIN_BACKOFF = 15.0
DEFAULT_MAX_BACKOFF = 3600.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one message is retried; see `Retries` for the meaning of each field."""

    max_retries: int = DEFAULT_MAX_RETRIES
    min_backoff: float = DEFAULT_MIN_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    retry_when: RetryWhen | None = None
    throws: tuple[type[BaseException], ...] = ()

    def backoff(self, retries: int, rng: random.Random) -> float:
        """Return the delay before retry number ``retries + 1``, in seconds.

        Exponential with full jitter above the floor: uniform in
        ``[min_backoff, min(max_backoff, min_backoff * 2**retries)]``.
        """
        ceiling = min(self.max_backoff, self.min_backoff * 2 ** min(retries, 62))
        return self.min_backoff + rng.uniform(0.0, max(0.0, ceiling - self.min_backoff))

    def decide(self, retries: int, exception: BaseException) -> str | None:
        """Return None to retry, or the dead-letter reason for a final failure."""
        if isinstance(exception, Fail):
            return "failed"
        if self.throws and isinstance(exception, self.throws):
            return "non-retryable"
        if self.retry_when is not None:
            return None if self.retry_when(retries, exception) else "non-retryable"
        return None if retries < self.max_retries else "max-retries"


class Retries(Middleware):
    """Runs a failed message again after an exponential backoff with jitter.

    A retry is a new publish of the message with a delay, held by the broker (nothing waits in
    worker memory); the retry count and the last error travel with it. When retries run out the
    message is dead-lettered into ``Q.DLQ`` with the reason and the error in its headers.

    Actor options:
        max_retries: Retries after the first run (default 20; 0 never retries).
        min_backoff: First delay, in seconds or a timedelta (default 15 s).
        max_backoff: Longest delay (default 3600 s). Delay number n is uniform in
            ``[min_backoff, min(max_backoff, min_backoff * 2**(n-1))]``.
        retry_when: ``retry_when(retries, exception) -> bool`` replaces the ``max_retries``
            rule (``retries`` counts the retries so far).
        throws: Exception classes that are never retried (dead-lettered as ``non-retryable``).

    Actors may raise `actors.Retry(delay=...)` to ask for a later run (logged as a retry, not
    an error; it counts against ``max_retries``), or `actors.Fail(reason)` to dead-letter the
    message at once (reason ``failed``). Dead-letter reasons: ``max-retries``,
    ``non-retryable``, ``failed``.

    Args:
        max_retries: The default of the ``max_retries`` option.
        min_backoff: The default of ``min_backoff``, in seconds.
        max_backoff: The default of ``max_backoff``, in seconds.
        rng: The random source of the jitter (injectable for tests).
    """

    actor_options: ClassVar[frozenset[str]] = frozenset(
        {"max_retries", "min_backoff", "max_backoff", "retry_when", "throws"}
    )

    def __init__(
        self,
        *,
        max_retries: int = DEFAULT_MAX_RETRIES,
        min_backoff: float = DEFAULT_MIN_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        rng: random.Random | None = None,
    ) -> None:
        self._defaults = RetryPolicy(max_retries, min_backoff, max_backoff)
        self._rng = rng or random.Random()

    def policy_for(self, delivery: Delivery) -> RetryPolicy:
        """The policy of `delivery`: message options, else actor options, else the defaults."""
        base = self._defaults
        throws = delivery.option("throws", base.throws)
        return RetryPolicy(
            max_retries=int(delivery.option("max_retries", base.max_retries)),
            min_backoff=_or(
                seconds(delivery.option("min_backoff"), "min_backoff"), base.min_backoff
            ),
            max_backoff=_or(
                seconds(delivery.option("max_backoff"), "max_backoff"), base.max_backoff
            ),
            retry_when=delivery.option("retry_when"),
            throws=tuple(throws) if isinstance(throws, list | tuple) else (throws,),
        )

    def after_process_message(
        self,
        broker: Broker,
        delivery: Delivery,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """Decide retry or dead-letter for a failed message nobody decided about yet."""
        if exception is None or delivery.outcome is not Outcome.ACK or delivery.message is None:
            return
        policy = self.policy_for(delivery)
        retries = delivery.message.retries
        reason = policy.decide(retries, exception)
        if reason is not None:
            delivery.reject(Failure.from_exception(reason, exception))
        elif isinstance(exception, Retry) and exception.delay is not None:
            delivery.retry_in(exception.delay)
        else:
            delivery.retry_in(policy.backoff(retries, self._rng))


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
