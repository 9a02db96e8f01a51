"""Actors: functions bound to queues, called by sending them messages."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, overload

from actors import middleware as _builtin_middleware  # noqa: F401 - declares the built-in options
from actors import registry
from actors.errors import ConfigurationError
from actors.message import Message
from actors.middleware.base import DECLARED_OPTIONS
from actors.names import DEFAULT_QUEUE

if TYPE_CHECKING:
    from actors.broker import Broker

P = ParamSpec("P")
R = TypeVar("R")

Seconds = float | int | timedelta


def to_seconds(value: Seconds | None) -> float | None:
    """Return a duration in seconds from seconds or a `timedelta` (None stays None)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def check_priority(priority: Any) -> int:
    """Return `priority` if it is an int in 0..9.

    Raises:
        ConfigurationError: It is not.
    """
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise ConfigurationError(f"priority must be an integer from 0 to 9, not {priority!r}")
    return priority


def check_options(options: dict[str, Any], where: str) -> None:
    """Refuse options that no middleware declares, listing the known ones.

    Raises:
        ConfigurationError: An option is unknown.
    """
    unknown = set(options) - DECLARED_OPTIONS
    if unknown:
        known = ", ".join(sorted(DECLARED_OPTIONS | {"queue", "priority", "actor_name"}))
        raise ConfigurationError(
            f"{where}: unknown option(s) {', '.join(sorted(unknown))}; known options: {known}"
        )


class Actor(Generic[P, R]):
    """A function that runs on workers when it is sent a message.

    Create actors with the `actor` decorator. Calling the actor directly runs the function
    in the caller, as a plain call.

    Attributes:
        fn: The wrapped function.
        actor_name: The name messages use to reach it.
        queue_name: The queue its messages travel on.
        priority: The default priority of its messages (0..9, higher first).
        options: Middleware options (``max_retries``, ``time_limit`` ...).
        is_async: True for ``async def`` actors, which run on the worker's event loop.
    """

    def __init__(
        self,
        fn: Callable[P, R] | Callable[P, Awaitable[R]],
        *,
        actor_name: str,
        queue_name: str,
        priority: int,
        options: dict[str, Any],
        broker: Broker | None = None,
    ) -> None:
        self.fn = fn
        self.actor_name = actor_name
        self.queue_name = queue_name
        self.priority = priority
        self.options = options
        self.is_async = inspect.iscoroutinefunction(fn)
        self._broker = broker
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    @property
    def broker(self) -> Broker:
        """The broker this actor sends through: its own if given, else the process broker."""
        broker = self._broker or registry.get_broker()
        broker.declare_actor(self)
        return broker

    def message(self, *args: P.args, **kwargs: P.kwargs) -> Message[R]:
        """Build a message for this actor without sending it (for composition)."""
        return Message(
            queue=self.queue_name,
            actor=self.actor_name,
            args=args,
            kwargs=kwargs,
            priority=self.priority,
        )

    def message_with_options(
        self,
        *,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        priority: int | None = None,
        **options: Any,
    ) -> Message[R]:
        """Build an unsent message with per-message options; see `send_with_options`."""
        if options:
            check_options(options, f"{self.actor_name}.message_with_options")
        return Message(
            queue=self.queue_name,
            actor=self.actor_name,
            args=tuple(args),
            kwargs=dict(kwargs or {}),
            options=options,
            priority=self.priority if priority is None else check_priority(priority),
        )

    def send(self, *args: P.args, **kwargs: P.kwargs) -> Message[R]:
        """Send a message to run this actor with these arguments; return the message.

        Returns once the broker holds the message (after the publisher confirm).

        Raises:
            EncodingError: An argument cannot be encoded; the error names it.
            BrokerError: The broker refused the message or could not be reached in time.
        """
        message: Message[R] = self.message(*args, **kwargs)
        self.broker.enqueue(message)
        return message

    def send_with_options(
        self,
        *,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        delay: Seconds | None = None,
        eta: datetime | None = None,
        priority: int | None = None,
        **options: Any,
    ) -> Message[R]:
        """Send a message with per-message options.

        Args:
            args: Positional arguments.
            kwargs: Keyword arguments.
            delay: Run no earlier than this many seconds from now.
            eta: Run no earlier than this aware datetime (exclusive with `delay`).
            priority: 0..9, higher first (default: the actor's priority).
            **options: Middleware options for this message only (``max_retries`` ...).
        """
        message = self.message_with_options(args=args, kwargs=kwargs, priority=priority, **options)
        self.broker.enqueue(message, delay=_delay_from(delay, eta))
        return message

    async def send_async(self, *args: P.args, **kwargs: P.kwargs) -> Message[R]:
        """Send from asyncio code without blocking the event loop; see `send`."""
        message: Message[R] = self.message(*args, **kwargs)
        await self.broker.enqueue_async(message)
        return message

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R | Awaitable[R]:
        """Run the function here and now, like a plain call."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Actor({self.actor_name!r}, queue={self.queue_name!r})"


def _delay_from(delay: Seconds | None, eta: datetime | None) -> float | None:
    if eta is None:
        return to_seconds(delay)
    if delay is not None:
        raise ConfigurationError("give delay= or eta=, not both")
    if eta.tzinfo is None:
        raise ConfigurationError("eta= must be an aware datetime (with tzinfo)")
    return max(0.0, (eta - datetime.now(eta.tzinfo)).total_seconds())


class ActorDecorator(Protocol):
    """What ``@actor(...)`` with arguments returns: a decorator that keeps the signature."""

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]]) -> Actor[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Actor[P, R]: ...


@overload
def actor(fn: Callable[P, Coroutine[Any, Any, R]], /) -> Actor[P, R]: ...


@overload
def actor(fn: Callable[P, R], /) -> Actor[P, R]: ...


@overload
def actor(
    *,
    actor_name: str | None = None,
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    broker: Broker | None = None,
    **options: Any,
) -> ActorDecorator: ...


def actor(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    actor_name: str | None = None,
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    broker: Broker | None = None,
    **options: Any,
) -> Any:
    """Declare a function (sync or ``async``) as an actor.

    Use bare (``@actor``) or with options (``@actor(queue="emails", max_retries=3)``).

    Args:
        actor_name: The name messages use (default: the function's name).
        queue: The queue its messages travel on (default ``default``).
        priority: Default priority of its messages, 0..9, higher first (default 0).
        broker: A broker for this actor only (default: the process broker, at first send).
        **options: Options read by middleware (``max_retries``, ``time_limit``, ...).

    Raises:
        ConfigurationError: An option that no middleware declares, a bad priority or queue
            name, or a name already taken by another function.
    """

    def decorate(function: Callable[..., Any]) -> Actor[Any, Any]:
        name = actor_name or function.__name__
        check_options(options, f"@actor {name}")
        if not queue or queue.endswith(".DLQ") or len(queue) > 200:
            raise ConfigurationError(f"@actor {name}: invalid queue name {queue!r}")
        declared: Actor[Any, Any] = Actor(
            function,
            actor_name=name,
            queue_name=queue,
            priority=check_priority(priority),
            options=options,
            broker=broker,
        )
        registry.declare_actor(declared)
        return declared

    return decorate(fn) if fn is not None else decorate
