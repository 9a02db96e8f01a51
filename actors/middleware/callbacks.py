"""Callbacks: actors enqueued when a message succeeds or finally fails."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from actors import registry
from actors.delivery import Outcome
from actors.errors import ConfigurationError
from actors.message import Message
from actors.middleware._options import actor_name_of
from actors.middleware.base import Middleware

if TYPE_CHECKING:
    from actors.actor import Actor
    from actors.broker import Broker
    from actors.delivery import Delivery, Failure

logger = logging.getLogger("actors.middleware.callbacks")


class Callbacks(Middleware):
    """Enqueues ``on_success`` / ``on_failure`` actors when a message is done with.

    ``on_success`` is sent ``(message_id, result)`` after a successful run. ``on_failure`` is
    sent ``(message_id, {"type": ..., "message": ...})`` once, when the message is finally
    dead-lettered (never for an attempt that will be retried); ``type`` is the exception's class
    name (or the dead-letter reason, such as ``max-age``, when no exception caused it).

    The callback is enqueued before the original message is acknowledged, so a worker crash in
    between can send it twice (at-least-once, like every message).

    Actor options:
        on_success: An actor or actor name (names also work per message with
            ``send_with_options``).
        on_failure: An actor or actor name.
    """

    actor_options: ClassVar[frozenset[str]] = frozenset({"on_success", "on_failure"})

    def applies_to(self, actor: Actor[Any, Any]) -> bool:
        """Only actors with ``on_success`` or ``on_failure``."""
        return self._uses_options_of(actor)

    def after_process_message(
        self,
        broker: Broker,
        delivery: Delivery,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """Send ``on_success`` after a successful run."""
        if exception is not None or delivery.outcome is not Outcome.ACK:
            return
        target = delivery.option("on_success")
        if target is not None:
            _send(broker, target, "on_success", (delivery.message_id, result))

    def after_dead_letter(self, broker: Broker, delivery: Delivery, failure: Failure) -> None:
        """Send ``on_failure`` once the message failed for good."""
        target = delivery.option("on_failure")
        if target is None:
            return
        error = {
            "type": failure.error_type or failure.reason,
            "message": failure.error_message or failure.reason,
        }
        _send(broker, target, "on_failure", (delivery.message_id, error))


def _send(broker: Broker, target: Any, option: str, args: tuple[Any, ...]) -> None:
    name = actor_name_of(target, option)
    callback: Actor[Any, Any] | None = target if not isinstance(target, str) else None
    if callback is None:
        callback = registry.find_actor(name)
    if callback is None:
        raise ConfigurationError(f"{option}: no actor named {name!r} is declared in this process")
    broker.declare_actor(callback)
    message: Message[Any] = Message(
        queue=callback.queue_name, actor=name, args=args, priority=callback.priority
    )
    broker.enqueue(message)
