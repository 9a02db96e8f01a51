"""Age limit: messages that waited too long are dead-lettered instead of run."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from actors.delivery import Failure
from actors.errors import SkipMessage
from actors.middleware._options import seconds
from actors.middleware.base import Middleware

if TYPE_CHECKING:
    from actors.actor import Actor
    from actors.broker import Broker
    from actors.delivery import Delivery


class AgeLimit(Middleware):
    """Dead-letters a message that is older than its ``max_age`` when a worker takes it.

    The age counts from the first enqueue (retries keep it), so ``max_age`` bounds how stale
    any run of the message can be. The dead letter's reason is ``max-age``; the actor does not
    run and no retry is spent.

    Actor options:
        max_age: Seconds or a timedelta (default None: no limit).

    Args:
        max_age: The default of the ``max_age`` option, in seconds (None: no limit).
        clock: Wall-clock seconds since the epoch (default `time.time`), for tests.
    """

    actor_options: ClassVar[frozenset[str]] = frozenset({"max_age"})

    def __init__(
        self, *, max_age: float | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._default = max_age
        self._clock = clock

    def applies_to(self, actor: Actor[Any, Any]) -> bool:
        """Actors with ``max_age``, or all if this middleware has a default."""
        return self._default is not None or self._uses_options_of(actor)

    def before_process_message(self, broker: Broker, delivery: Delivery) -> None:
        """Skip and dead-letter the message if it is too old."""
        message = delivery.message
        max_age = seconds(delivery.option("max_age", self._default), "max_age")
        if max_age is None or message is None:
            return
        age = self._clock() - message.enqueued_at
        if age > max_age:
            delivery.reject(
                Failure("max-age", "", f"message was {age:.3f}s old; max_age is {max_age:g}s")
            )
            raise SkipMessage
