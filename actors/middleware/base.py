"""The middleware base class: hooks called around the life of every message."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from actors.actor import Actor
    from actors.broker import Broker
    from actors.delivery import Delivery, Failure
    from actors.message import Message
    from actors.worker import Worker

#: Every actor option declared by a middleware class defined in this process.
DECLARED_OPTIONS: set[str] = set()


class Middleware:
    """Base class for middleware: override the hooks you need, declare your actor options.

    Hooks read as a timeline. ``before_*`` hooks run in stack order, ``after_*`` hooks in
    reverse. The broker calls a hook only on the middleware that override it, so an unused
    hook costs nothing. Hooks are synchronous and should be cheap: the worker-side hooks of an
    async actor run on the worker's event loop.

    Producer-side hooks (``before_enqueue`` ...) run in the producer; an exception there
    propagates to the caller of ``send()``. Worker-side hooks that raise are logged with the
    middleware's name and the message id, and the worker carries on; only `SkipMessage`
    raised from ``before_process_message`` changes the flow (the actor is not run).

    Attributes:
        actor_options: The actor options this middleware reads; declaring them here lets
            ``@actor(...)`` and ``send_with_options(...)`` accept them.
    """

    actor_options: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        DECLARED_OPTIONS.update(cls.actor_options)

    @property
    def name(self) -> str:
        """The middleware's name in logs."""
        return type(self).__name__

    def applies_to(self, actor: Actor[Any, Any]) -> bool:
        """Whether the message hooks have work to do for a message of `actor` that carries
        no options of its own (asked once per actor; messages with options get every hook).

        The default is True. A middleware driven only by options returns False for an actor
        that sets none of them, and stays off that actor's hot path.
        """
        return True

    def _uses_options_of(self, actor: Actor[Any, Any]) -> bool:
        """True if `actor` sets one of this middleware's `actor_options`."""
        return not self.actor_options.isdisjoint(actor.options)

    @property
    def handles_messages(self) -> bool:
        """Whether the message hooks (``before/after_process_message``, ``after_skip_message``)
        have work to do in this worker; checked once every ``after_worker_boot`` hook ran.

        A middleware that finds at boot that it has nothing to do (no backend, say) returns
        False, and the worker stops calling those hooks at all.
        """
        return True

    # -- declaration ----------------------------------------------------------------------------

    def after_declare_actor(self, broker: Broker, actor: Actor[Any, Any]) -> None:
        """Called once for each actor when the broker first learns of it."""

    # -- producer side --------------------------------------------------------------------------

    def before_enqueue(self, broker: Broker, message: Message[Any], delay: float | None) -> None:
        """Called before a message is published; `delay` in seconds or None.

        Raise `SkipMessage` to drop the message: it is not published and ``send()`` returns it.
        """

    def before_delay_message(self, broker: Broker, message: Message[Any], delay: float) -> None:
        """Called before a message is published with a delay (after ``before_enqueue``)."""

    def after_enqueue(self, broker: Broker, message: Message[Any], delay: float | None) -> None:
        """Called once the broker holds the message (after the publisher confirm)."""

    # -- worker side ----------------------------------------------------------------------------

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        """Called in each worker process before it takes its first message."""

    def before_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        """Called when a worker starts to shut down (stops taking messages)."""

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        """Called after a worker finished or returned its in-flight messages."""

    def before_process_message(self, broker: Broker, delivery: Delivery) -> None:
        """Called before the actor runs; raise `SkipMessage` to not run it."""

    def after_process_message(
        self,
        broker: Broker,
        delivery: Delivery,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """Called after the actor returned `result` or raised `exception`."""

    def after_skip_message(self, broker: Broker, delivery: Delivery) -> None:
        """Called when a message was skipped by ``before_process_message``."""

    def after_retry(self, broker: Broker, delivery: Delivery, delay: float) -> None:
        """Called after a failed message was scheduled to run again in `delay` seconds."""

    def after_dead_letter(self, broker: Broker, delivery: Delivery, failure: Failure) -> None:
        """Called after a message was dead-lettered for good, with the reason."""


#: The hooks called for every message a worker processes.
MESSAGE_HOOKS = frozenset({"before_process_message", "after_process_message", "after_skip_message"})

HOOK_NAMES: tuple[str, ...] = (
    "after_declare_actor",
    "before_enqueue",
    "before_delay_message",
    "after_enqueue",
    "after_worker_boot",
    "before_worker_shutdown",
    "after_worker_shutdown",
    "before_process_message",
    "after_process_message",
    "after_skip_message",
    "after_retry",
    "after_dead_letter",
)
