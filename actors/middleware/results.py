"""Results: an actor's return value (or its error) stored for `Message.get_result`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from actors import registry, results
from actors.delivery import Outcome
from actors.middleware._options import seconds
from actors.middleware.base import Middleware

if TYPE_CHECKING:
    from actors.actor import Actor
    from actors.backends.base import Backend
    from actors.broker import Broker
    from actors.delivery import Delivery, Failure

logger = logging.getLogger("actors.middleware.results")

DEFAULT_RESULT_TTL = 3600.0


class Results(Middleware):
    """Stores what actors with ``store_results=True`` return, in the process backend.

    A success is stored when the actor returns. A failure is stored once, when the message is
    finally dead-lettered (not on attempts that will be retried): callers get
    `actors.ResultFailure` with the error type and message. A message dead-lettered without an
    exception (``max-age`` ...) leaves a tombstone, and callers get `actors.ResultMissing` at
    once. The return value must be something the encoder carries (msgpack types); if it is not,
    an ``EncodingError`` failure is stored instead.

    Actor options:
        store_results: Store results of this actor (default False).
        result_ttl: How long a result is kept, in seconds or a timedelta (default 3600 s).

    Args:
        result_ttl: The default of the ``result_ttl`` option, in seconds.
        backend: The backend to store into (default: `actors.get_backend()`, resolved at the
            first result, so that actors without ``store_results`` never need one).
    """

    actor_options: ClassVar[frozenset[str]] = frozenset({"store_results", "result_ttl"})

    def __init__(
        self, *, result_ttl: float = DEFAULT_RESULT_TTL, backend: Backend | None = None
    ) -> None:
        self._ttl = result_ttl
        self._backend = backend

    @property
    def backend(self) -> Backend:
        """The backend results go to."""
        if self._backend is None:
            self._backend = registry.get_backend()
        return self._backend

    def applies_to(self, actor: Actor[Any, Any]) -> bool:
        """Only actors that store results."""
        return bool(actor.options.get("store_results"))

    def after_process_message(
        self,
        broker: Broker,
        delivery: Delivery,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """Store the return value of a successful run."""
        if exception is not None or delivery.outcome is not Outcome.ACK:
            return
        if not delivery.option("store_results", False):
            return
        try:
            payload = results.encode_success(result)
        except (TypeError, ValueError, OverflowError) as exc:
            logger.error("result of %s cannot be stored: %s", delivery.message_id, exc)
            payload = results.encode_failure("EncodingError", f"result cannot be encoded: {exc}")
        self.backend.put_result(delivery.message_id, payload, self._ttl_of(delivery))

    def after_dead_letter(self, broker: Broker, delivery: Delivery, failure: Failure) -> None:
        """Store the final failure (or a tombstone) so that waiters stop waiting."""
        if delivery.message is None or not delivery.option("store_results", False):
            return
        if failure.error_type:
            payload = results.encode_failure(failure.error_type, failure.error_message)
        else:
            payload = results.encode_missing(f"dead-lettered ({failure.reason}): "
                                             f"{failure.error_message}")  # fmt: skip
        self.backend.put_result(delivery.message_id, payload, self._ttl_of(delivery))

    def _ttl_of(self, delivery: Delivery) -> float:
        ttl = seconds(delivery.option("result_ttl"), "result_ttl")
        return self._ttl if ttl is None else ttl
