"""Unique messages: a duplicate send is dropped while an equal message is queued or running."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, ClassVar

import msgpack

from actors import names, registry
from actors.delivery import Outcome
from actors.errors import SkipMessage
from actors.middleware._options import seconds
from actors.middleware.base import Middleware

if TYPE_CHECKING:
    from actors.actor import Actor
    from actors.broker import Broker
    from actors.delivery import Delivery, Failure
    from actors.message import Message


def unique_lock_key(message: Message[Any], explicit: str | None) -> str:
    """The lock key of `message`: its actor plus `explicit`, or a hash of its arguments."""
    if explicit is None:
        encoded = msgpack.packb([list(message.args), sorted(message.kwargs.items())],
                                use_bin_type=True, default=repr)  # fmt: skip
        explicit = hashlib.sha256(encoded).hexdigest()[:32]
    return f"{names.UNIQUE_KEY_PREFIX}{message.actor}:{explicit}"


class Unique(Middleware):
    """Drops a send while an equal message is queued or running (safe producer retries).

    Two messages are equal when they have the same actor and the same arguments, or the same
    ``unique_key``. The first send takes a lock in the backend (``SET NX`` with the
    ``unique_for`` TTL) holding its message id; the lock is released when that message
    finishes for good (succeeded, dead-lettered, cancelled), not between retries. A send made
    while the lock is held is not published: ``send()`` returns the message with the id of the
    equal message already queued or running (so ``get_result``, ``status`` and ``cancel`` reach
    that one) and ``message.options["unique_duplicate"]`` set to True. If the lock expires first
    (``unique_for`` too short), an equal send goes through again.

    Actor options:
        unique_for: Seconds (or a timedelta) the lock is held at most; None: not unique.
        unique_key: An explicit key instead of the argument hash (per message, with
            ``send_with_options``).
        unique_lock: Set by this middleware: the lock the message holds.
    """

    actor_options: ClassVar[frozenset[str]] = frozenset({"unique_for", "unique_key", "unique_lock"})

    def before_enqueue(self, broker: Broker, message: Message[Any], delay: float | None) -> None:
        """Take the lock, or drop the message as a duplicate."""
        ttl, explicit = _unique_options(message)
        if ttl is None:
            return
        key = unique_lock_key(message, explicit)
        backend = registry.get_backend()
        if backend.set_key(key, message.id, ttl, only_if_absent=True):
            message.options["unique_lock"] = key
            return
        [holder] = backend.get_keys([key])
        if holder is not None:
            message.id = holder
        message.options["unique_duplicate"] = True
        raise SkipMessage

    def applies_to(self, actor: Actor[Any, Any]) -> bool:
        """A unique message carries its lock in its options; others hold nothing to release."""
        return self._uses_options_of(actor)

    def after_process_message(
        self,
        broker: Broker,
        delivery: Delivery,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """Release the lock after a success."""
        if exception is None and delivery.outcome is Outcome.ACK:
            self._release(delivery)

    def after_skip_message(self, broker: Broker, delivery: Delivery) -> None:
        """Release the lock of a message skipped for good."""
        if delivery.outcome is Outcome.ACK:
            self._release(delivery)

    def after_dead_letter(self, broker: Broker, delivery: Delivery, failure: Failure) -> None:
        """Release the lock of a message that failed for good."""
        self._release(delivery)

    def _release(self, delivery: Delivery) -> None:
        message = delivery.message
        if message is None or "unique_lock" not in message.options:
            return
        registry.get_backend().delete_key(message.options["unique_lock"], if_value=message.id)


def _unique_options(message: Message[Any]) -> tuple[float | None, str | None]:
    options = message.options
    if "unique_for" in options or "unique_key" in options:
        ttl, key = options.get("unique_for"), options.get("unique_key")
    else:
        ttl, key = None, None
    declared = registry.find_actor(message.actor)
    if declared is not None:
        ttl = ttl if ttl is not None else declared.options.get("unique_for")
        key = key if key is not None else declared.options.get("unique_key")
    return seconds(ttl, "unique_for"), key
