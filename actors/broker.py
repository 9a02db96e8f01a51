"""The broker contract: what every broker (memory, RabbitMQ, Redis) provides."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actors.encoding import Codec, Envelope
from actors.errors import (
    Cancelled,
    ConfigurationError,
    SkipMessage,
    TimeLimitExceeded,
    WorkerShutdown,
)
from actors.middleware.base import HOOK_NAMES, MESSAGE_HOOKS, Middleware

if TYPE_CHECKING:
    from actors.actor import Actor
    from actors.backends.base import Backend
    from actors.delivery import Delivery
    from actors.message import Message

logger = logging.getLogger("actors.broker")

DeliveryHandler = Callable[["Delivery"], None]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message in a dead-letter queue, as shown by ``actors dlq show``."""

    message_id: str
    actor: str
    queue: str
    args: Any
    kwargs: Any
    retries: int
    reason: str
    error: str
    failed_at: str
    body_size: int


class Consumer(ABC):
    """Takes messages from queues and hands them to a callback, from the broker's I/O thread.

    At most `prefetch` deliveries are outstanding (handed over and not yet settled). A
    consumer may also let the worker's idle threads read (`read`): the callback then runs on
    the thread that read, which can run what it took without waking another thread.
    """

    def on_reader_wanted(self, callback: Callable[[], bool]) -> None:  # noqa: B027 (optional)
        """Have `callback` called after the consumer's own thread read for lack of a worker
        thread reading; it returns True if it woke an idle thread of the worker to read next
        (`read`), and the consumer's thread then leaves reading to it.
        """

    def read(self) -> bool:
        """Read from the broker on the calling thread, handing deliveries to the callback.

        Returns False at once when another thread is reading or this consumer does not let
        other threads read (the default); else True after one read, which waits at most a
        fraction of a second for something to arrive.
        """
        return False

    @abstractmethod
    def start(self) -> None:
        """Connect (waiting and logging while the broker is down) and start consuming."""

    @abstractmethod
    def stop(self) -> None:
        """Stop taking new messages; deliveries already handed over can still be settled."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection; unsettled deliveries go back to their queues."""

    @abstractmethod
    def set_prefetch(self, prefetch: int) -> None:
        """Take up to `prefetch` deliveries ahead from now on (none is given back for it)."""


class Broker(ABC):
    """Owns connections, queues, publishing, consumption and the middleware stack.

    Args:
        middleware: The middleware stack, in order; `None` means the default stack
            (`actors.middleware.default_middleware()`).
        codec: How messages are encoded (default msgpack, 4 MiB limit, no signing).
    """

    #: The URL schemes this broker answers to (``memory``, ``amqp`` ...).
    schemes: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        middleware: Iterable[Middleware] | None = None,
        codec: Codec | None = None,
    ) -> None:
        if middleware is None:
            from actors.middleware import default_middleware

            middleware = default_middleware()
        self.codec = codec or Codec()
        self._middleware: list[Middleware] = []
        self._hooks: dict[str, tuple[Callable[..., None], ...]] = {}
        # actor -> its message hooks, for messages that carry no options of their own
        self._actor_hooks: dict[Actor[Any, Any], dict[str, tuple[Callable[..., None], ...]]] = {}
        self._declared_actors: set[str] = set()
        for each in middleware:
            self._middleware.append(each)
        self._rebuild_hooks()

    # -- middleware -----------------------------------------------------------------------------

    @property
    def middleware(self) -> tuple[Middleware, ...]:
        """The middleware stack, in order."""
        return tuple(self._middleware)

    def add_middleware(
        self,
        middleware: Middleware,
        *,
        before: type[Middleware] | None = None,
        after: type[Middleware] | None = None,
    ) -> None:
        """Add `middleware` to the stack: at the end, or just before/after a middleware class.

        Raises:
            ConfigurationError: Both `before` and `after` given, or the named class is not in
                the stack.
        """
        if before is not None and after is not None:
            raise ConfigurationError("add_middleware takes before= or after=, not both")
        anchor = before or after
        if anchor is None:
            self._middleware.append(middleware)
        else:
            index = self._index_of(anchor)
            self._middleware.insert(index if before is not None else index + 1, middleware)
        self._rebuild_hooks()

    def _index_of(self, kind: type[Middleware]) -> int:
        for index, each in enumerate(self._middleware):
            if isinstance(each, kind):
                return index
        stack = ", ".join(m.name for m in self._middleware)
        raise ConfigurationError(f"{kind.__name__} is not in the middleware stack ({stack})")

    def get_middleware(self, kind: type[Middleware]) -> Middleware | None:
        """Return the first middleware of class `kind` in the stack, if any."""
        for each in self._middleware:
            if isinstance(each, kind):
                return each
        return None

    def refresh_hooks(self) -> None:
        """Rebuild the hook tables (workers call this once their middleware booted)."""
        self._rebuild_hooks()

    def _rebuild_hooks(self) -> None:
        for hook in HOOK_NAMES:
            base = getattr(Middleware, hook)
            bound = [
                getattr(m, hook)
                for m in self._middleware
                if getattr(type(m), hook) is not base
                and (hook not in MESSAGE_HOOKS or m.handles_messages)
            ]
            if hook.startswith("after_"):
                bound.reverse()
            self._hooks[hook] = tuple(bound)
        self._actor_hooks = {}

    def _message_hooks(self, hook: str, delivery: Delivery) -> tuple[Callable[..., None], ...]:
        """The calls of message hook `hook` for `delivery`: those of the middleware that apply
        to its actor when the message carries no options of its own, else all of them."""
        actor, message = delivery.actor, delivery.message
        if actor is None or message is None or message.options:
            return self._hooks[hook]
        tables = self._actor_hooks.get(actor)
        if tables is None:
            tables = self._actor_hooks[actor] = {
                name: tuple(call for call in self._hooks[name] if call.__self__.applies_to(actor))  # type: ignore[attr-defined]
                for name in MESSAGE_HOOKS
            }
        return tables[hook]

    def declared_options(self) -> frozenset[str]:
        """The actor options that this broker's middleware read."""
        return frozenset().union(*(m.actor_options for m in self._middleware))

    def emit(self, hook: str, *args: Any, **kwargs: Any) -> None:
        """Call `hook` on every middleware that implements it; errors propagate."""
        for call in self._hooks[hook]:
            call(self, *args, **kwargs)

    def emit_guarded(self, hook: str, delivery: Delivery | None, *args: Any, **kw: Any) -> None:
        """Call a worker-side hook; log errors (but `SkipMessage`) and carry on."""
        calls = (
            self._message_hooks(hook, delivery)
            if delivery is not None and hook in MESSAGE_HOOKS
            else self._hooks[hook]
        )
        for call in calls:
            try:
                call(self, *args, **kw)
            except SkipMessage:
                raise
            except (Exception, TimeLimitExceeded, Cancelled, WorkerShutdown):
                # An interrupt that lands just as the actor returned must not cut the chain:
                # the hooks after it still store results, fire callbacks, record status.
                logger.exception(
                    "middleware %s failed in %s (message %s)",
                    type(getattr(call, "__self__", call)).__name__,
                    hook,
                    delivery.label if delivery is not None else "-",
                )

    def has_hook(self, hook: str) -> bool:
        """Tell whether any middleware implements `hook`."""
        return bool(self._hooks[hook])

    # -- actors and queues ----------------------------------------------------------------------

    def declare_actor(self, actor: Actor[Any, Any]) -> None:
        """Make sure the actor's queue exists; called on first use of each actor."""
        if actor.actor_name in self._declared_actors:
            return
        self.declare_queue(actor.queue_name)
        self._declared_actors.add(actor.actor_name)
        self.emit("after_declare_actor", actor)

    @abstractmethod
    def declare_queue(self, queue: str) -> None:
        """Create `queue` (and its DLQ and delay machinery) if it does not exist."""

    # -- publishing -----------------------------------------------------------------------------

    def enqueue(self, message: Message[Any], *, delay: float | None = None) -> Message[Any]:
        """Publish `message`, after `delay` seconds if given; return it once the broker holds it.

        A ``before_enqueue`` hook may drop the message by raising `SkipMessage` (unique
        messages): it is then returned unpublished.

        Raises:
            EncodingError: An argument cannot be encoded (names the argument).
            MessageTooLarge: The encoded message is over the size limit.
            BrokerError: The broker refused the message or could not be reached in time.
        """
        delay = _positive(delay)
        if not self._admit(message, delay):
            return message
        if delay is not None:
            self.emit("before_delay_message", message, delay)
        self._publish(self.codec.pack(message), delay)
        self.emit("after_enqueue", message, delay)
        return message

    def enqueue_many(self, messages: Sequence[Message[Any]]) -> list[Message[Any]]:
        """Publish several messages at once (confirms pipelined where the broker can)."""
        admitted = [message for message in messages if self._admit(message, None)]
        self._publish_many([self.codec.pack(message) for message in admitted])
        for message in admitted:
            self.emit("after_enqueue", message, None)
        return list(messages)

    async def enqueue_async(
        self, message: Message[Any], *, delay: float | None = None
    ) -> Message[Any]:
        """Publish from asyncio code without blocking the event loop; see `enqueue`."""
        delay = _positive(delay)
        if not self._admit(message, delay):
            return message
        if delay is not None:
            self.emit("before_delay_message", message, delay)
        await self._publish_async(self.codec.pack(message), delay)
        self.emit("after_enqueue", message, delay)
        return message

    def _admit(self, message: Message[Any], delay: float | None) -> bool:
        """Run ``before_enqueue``; False if a middleware dropped the message (`SkipMessage`)."""
        try:
            self.emit("before_enqueue", message, delay)
        except SkipMessage:
            return False
        return True

    def republish(self, message: Message[Any], *, delay: float | None = None) -> None:
        """Publish a later attempt of a message taken from a queue (retry, deferral).

        Enqueue hooks do not run again: the message was already enqueued once.
        """
        self._publish(self.codec.pack(message), _positive(delay))

    @abstractmethod
    def _publish(self, envelope: Envelope, delay: float | None) -> None:
        """Hand one encoded message to the broker and wait until it holds it."""

    def _publish_many(self, envelopes: Sequence[Envelope]) -> None:
        for envelope in envelopes:
            self._publish(envelope, None)

    async def _publish_async(self, envelope: Envelope, delay: float | None) -> None:
        import asyncio

        await asyncio.to_thread(self._publish, envelope, delay)

    @abstractmethod
    def publish_raw(
        self, queue: str, body: bytes, headers: dict[str, Any] | None = None, *, priority: int = 0
    ) -> None:
        """Publish bytes as they are onto `queue`, as a foreign producer would (tools, tests).

        No encoding, no hooks, no size check: the worker decodes and judges the bytes.
        """

    # -- consuming ------------------------------------------------------------------------------

    @abstractmethod
    def consume(
        self, queues: Sequence[str], *, prefetch: int, on_delivery: DeliveryHandler
    ) -> Consumer:
        """Return a consumer of `queues` that calls `on_delivery` for each message."""

    # -- inspection and operations --------------------------------------------------------------

    @abstractmethod
    def queue_depth(self, queue: str) -> int:
        """Messages in `queue` not yet settled: ready, delayed and in flight (best effort)."""

    def join(self, queue: str, *, timeout: float | None = None, interval: float = 0.05) -> None:
        """Wait until `queue` has no ready, delayed or unacknowledged message.

        Args:
            queue: The queue to watch.
            timeout: The longest wait in seconds; None waits as long as it takes.
            interval: How often to look, in seconds, for brokers that cannot notify.

        Raises:
            TimeoutError: The queue still held messages when the timeout ran out.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self.flush(timeout)
        while (depth := self.queue_depth(queue)) > 0:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"queue {queue!r} still holds {depth} messages after {timeout}s")
            time.sleep(interval)

    @abstractmethod
    def purge(self, queue: str) -> int:
        """Delete every ready message in `queue`; return how many."""

    @abstractmethod
    def dead_letters(self, queue: str, *, limit: int = 20) -> list[DeadLetter]:
        """Return up to `limit` messages of `queue`'s DLQ without removing them."""

    @abstractmethod
    def replay_dead_letters(
        self, queue: str, *, limit: int | None = None, actor: str | None = None
    ) -> int:
        """Move dead letters of `queue` back onto `queue` (retries reset); return how many."""

    @abstractmethod
    def dead_letter_queues(self) -> dict[str, int]:
        """Return every dead-letter queue this broker knows of, with its depth."""

    def default_backend(self) -> Backend:
        """The backend to use when none was set (results, limits, status).

        Raises:
            ConfigurationError: This broker cannot provide one.
        """
        raise ConfigurationError(
            "no backend configured: call actors.set_backend(RedisBackend(url=...)) "
            "or set ACTORS_BACKEND_URL (redis://... or memory://)"
        )

    def flush(self, timeout: float | None = None) -> None:  # noqa: B027 - most publish in full
        """Wait until the broker holds every message that `enqueue` returned for.

        Brokers whose `enqueue` returns before the broker confirmed the message (RabbitMQ)
        wait for those confirms here; for the others there is nothing to wait for.
        """

    def close(self) -> None:  # noqa: B027 - brokers without connections have nothing to close
        """Close this broker's connections (producers)."""

    async def close_async(self) -> None:  # noqa: B027 - only brokers with async clients need it
        """Close what `enqueue_async` opened on the running event loop.

        Call it before an event loop that used ``send_async`` ends (``asyncio.run`` ...).
        """


def _positive(delay: float | None) -> float | None:
    return delay if delay is not None and delay > 0 else None
