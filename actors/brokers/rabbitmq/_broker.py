"""`RabbitmqBroker`: the primary broker (``amqp://`` and ``amqps://``)."""

from __future__ import annotations

import asyncio
import bisect
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pika
import pika.exceptions

from actors import names
from actors.broker import Broker, Consumer, DeadLetter, DeliveryHandler
from actors.brokers.rabbitmq import _topology as topology
from actors.brokers.rabbitmq._consumer import RabbitmqConsumer, carried_headers
from actors.brokers.rabbitmq._settings import QueueType, RabbitmqSettings
from actors.brokers.rabbitmq._sync import Link, Outgoing, Producer
from actors.dead_letters import describe_dead_letter, replay_headers
from actors.errors import BrokerError, QueueNotFound
from actors.worker import current_delivery

if TYPE_CHECKING:
    import ssl

    from actors.brokers.rabbitmq._admin import ManagementApi
    from actors.brokers.rabbitmq._async import AsyncPublisher
    from actors.encoding import Codec, Envelope
    from actors.middleware.base import Middleware

DEFAULT_URL = "amqp://guest:guest@localhost:5672/"

# A delayed message counts in `queue_depth` until this long after it is due: the last hops
# through the ladder take a few milliseconds more.
_DELAY_GRACE = 0.5


class RabbitmqBroker(Broker):
    """The RabbitMQ broker: durable priority queues, broker-held delays, DLQs, confirms.

    Args:
        url: ``amqp://user:password@host:port/vhost`` or ``amqps://...``.
        middleware: The middleware stack (default: the default stack).
        codec: The message codec (default msgpack).
        settings: All settings at once, instead of the keyword arguments below.
        confirm_delivery: Publisher confirms on every publish (default True).
        wait_for_confirms: `send()` returns only after the confirm (default False: it returns
            once the message is written, and the producer keeps it until confirmed).
        max_priority: Priority levels per queue (default 10); None for no priorities.
        heartbeat: AMQP heartbeat in seconds (default 10).
        connection_name: Name shown in the management UI.
        connect_timeout: Seconds a producer keeps trying before `ConnectionFailed` (default 15).
        queue_type: ``classic`` (default) or ``quorum``.
        dlq_ttl: Seconds dead letters are kept (default: forever).
        max_deliveries: Deliveries before a message that kills its worker is dead-lettered
            as ``poison`` (default 3; None disables the guard).
        management_url: Management HTTP API base URL (default ``http://<host>:15672``).
        ssl_context: TLS context for ``amqps://`` (default: system CAs).

    See `RabbitmqSettings` for the details of each setting.
    """

    schemes = ("amqp", "amqps")

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        middleware: Iterable[Middleware] | None = None,
        codec: Codec | None = None,
        settings: RabbitmqSettings | None = None,
        confirm_delivery: bool = True,
        max_priority: int | None = 10,
        heartbeat: float = 10.0,
        connection_name: str | None = None,
        connect_timeout: float = 15.0,
        queue_type: QueueType = "classic",
        dlq_ttl: float | None = None,
        max_deliveries: int | None = 3,
        management_url: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        wait_for_confirms: bool = False,
    ) -> None:
        super().__init__(middleware=middleware, codec=codec)
        self.settings = settings or RabbitmqSettings(
            url, confirm_delivery, max_priority, heartbeat, connection_name, connect_timeout,
            queue_type, dlq_ttl, max_deliveries, management_url, ssl_context, wait_for_confirms,
        )  # fmt: skip
        self._producer = Producer(self.settings)
        self._declared: set[str] = set()
        self._ladder_declared = False
        self._lock = threading.Lock()
        self._delayed: dict[str, list[float]] = {}  # queue -> sorted due times (this process)
        self._consumers: weakref.WeakSet[RabbitmqConsumer] = weakref.WeakSet()
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncPublisher] = (
            weakref.WeakKeyDictionary()
        )
        self._content_type = self.codec.encoder.content_type

    # -- queues ---------------------------------------------------------------------------------

    def declare_queue(
        self, queue: str, *, force: bool = False, timeout: float | None = None
    ) -> None:
        """Declare `queue`, ``queue.DLQ`` and the delay ladder, once per broker object.

        Args:
            queue: The queue name.
            force: Declare again even if this broker declared it before.
            timeout: Seconds to keep trying to reach RabbitMQ (default `connect_timeout`).

        Raises:
            QueueConflict: The queue exists with other arguments (says how to migrate).
            ConnectionFailed: RabbitMQ could not be reached in time.
        """
        if queue in self._declared and not force:
            return

        def declare(link: Link) -> None:
            if not self._ladder_declared:
                if not topology.ladder_exists(link.connection):
                    topology.declare_ladder(link.channel)
                self._ladder_declared = True
            topology.declare_queue(link.channel, queue, self.settings)

        self._producer.run(declare, timeout=timeout)
        self._declared.add(queue)

    # -- publishing -----------------------------------------------------------------------------

    def _outgoing(self, envelope: Envelope, delay: float | None) -> Outgoing:
        self.declare_queue(envelope.queue)
        properties = pika.BasicProperties(
            content_type=self._content_type,
            delivery_mode=pika.DeliveryMode.Persistent,
            priority=envelope.priority,
            message_id=envelope.id,
            headers=envelope.headers,
        )
        if delay is None:
            return Outgoing("", envelope.queue, envelope.body, properties)
        exchange, routing_key = topology.delay_route(envelope.queue, delay)
        return Outgoing(exchange, routing_key, envelope.body, properties)

    def _publish(self, envelope: Envelope, delay: float | None) -> None:
        outgoing = [self._outgoing(envelope, delay)]
        if self.settings.wait_for_confirms or current_delivery() is not None:
            # In a worker the message being processed is acknowledged after its hooks and
            # actor return: what they sent (retries, callbacks, next steps) must be confirmed
            # by then, or a crash in between would lose it.
            self._producer.publish(outgoing)
        else:
            self._producer.stream(outgoing)
        if delay is not None:
            self._track_delay(envelope.queue, delay)

    def publish_raw(
        self, queue: str, body: bytes, headers: dict[str, Any] | None = None, *, priority: int = 0
    ) -> None:
        self.declare_queue(queue)
        message_id = (headers or {}).get(names.HEADER_ID)
        properties = pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent,
            priority=priority,
            message_id=str(message_id) if message_id is not None else None,
            headers=dict(headers or {}),
        )
        self._producer.publish([Outgoing("", queue, body, properties)])

    def _publish_many(self, envelopes: Sequence[Envelope]) -> None:
        self._producer.publish([self._outgoing(envelope, None) for envelope in envelopes])

    async def _publish_async(self, envelope: Envelope, delay: float | None) -> None:
        if envelope.queue not in self._declared:
            await asyncio.to_thread(self.declare_queue, envelope.queue)
        loop = asyncio.get_running_loop()
        publisher = self._async.get(loop)
        if publisher is None:
            # Imported here: aio-pika costs a worker process ~3.5 MB that only async senders need.
            from actors.brokers.rabbitmq._async import AsyncPublisher

            publisher = self._async[loop] = AsyncPublisher(self.settings)
        exchange, routing_key = "", envelope.queue
        if delay is not None:
            exchange, routing_key = topology.delay_route(envelope.queue, delay)
        properties = {
            "content_type": self._content_type,
            "delivery_mode": 2,
            "priority": envelope.priority,
            "message_id": envelope.id,
            "headers": envelope.headers,
        }
        await publisher.publish(exchange, routing_key, envelope.body, properties)
        if delay is not None:
            self._track_delay(envelope.queue, delay)

    def _track_delay(self, queue: str, delay: float) -> None:
        due = time.time() + topology.rounded_delay(delay)
        with self._lock:
            bisect.insort(self._delayed.setdefault(queue, []), due)

    def _delayed_count(self, queue: str) -> int:
        horizon = time.time() - _DELAY_GRACE
        with self._lock:
            dues = self._delayed.get(queue)
            if not dues:
                return 0
            del dues[: bisect.bisect_left(dues, horizon)]
            return len(dues)

    # -- consuming ------------------------------------------------------------------------------

    def consume(
        self, queues: Sequence[str], *, prefetch: int, on_delivery: DeliveryHandler
    ) -> Consumer:
        consumer = RabbitmqConsumer(self, queues, prefetch, on_delivery)
        self._consumers.add(consumer)
        return consumer

    # -- inspection and operations --------------------------------------------------------------

    def queue_depth(self, queue: str) -> int:
        """Ready messages of `queue`, plus those held by this process's consumers and delays.

        Unacknowledged messages held by workers in *other* processes are not counted
        (RabbitMQ reports them only through the management API, seconds late).
        """
        ready = self._ready(queue)
        local = list(self._consumers)
        if ready == 0:
            for consumer in local:
                consumer.sync()
        in_flight = sum(consumer.in_flight.get(queue, 0) for consumer in local)
        return ready + in_flight + self._delayed_count(queue)

    def _ready(self, queue: str) -> int:
        def count(link: Link) -> int:
            try:
                frame = link.channel.queue_declare(queue, passive=True)
            except pika.exceptions.ChannelClosedByBroker as exc:
                link.close()  # the channel is gone; this link cannot be reused
                if exc.reply_code == 404:
                    return 0
                raise BrokerError(f"cannot inspect queue {queue!r}: {exc.reply_text}") from exc
            return int(frame.method.message_count)

        return self._producer.run(count)

    def purge(self, queue: str) -> int:
        """Delete every ready message of `queue` (not delayed ones); return how many.

        Raises:
            QueueNotFound: There is no such queue.
        """

        def purge(link: Link) -> int:
            try:
                frame = link.channel.queue_purge(queue)
            except pika.exceptions.ChannelClosedByBroker as exc:
                link.close()
                if exc.reply_code == 404:
                    raise QueueNotFound(queue) from exc
                raise BrokerError(f"cannot purge {queue!r}: {exc.reply_text}") from exc
            return int(frame.method.message_count)

        return self._producer.run(purge)

    def dead_letters(self, queue: str, *, limit: int = 20) -> list[DeadLetter]:
        """Read up to `limit` dead letters of `queue` (or of a ``Q.DLQ`` named directly).

        The messages are taken unacknowledged and given back, in order, when done.
        """
        dlq = queue if names.is_dead_letter_queue(queue) else names.dead_letter_queue(queue)

        def read(link: Link) -> list[DeadLetter]:
            found: list[DeadLetter] = []
            last_tag = 0
            try:
                while len(found) < limit:
                    method, properties, body = link.channel.basic_get(dlq, auto_ack=False)
                    if method is None:
                        break
                    last_tag = method.delivery_tag
                    found.append(describe_dead_letter(self, body, properties.headers or {}))
            except pika.exceptions.ChannelClosedByBroker as exc:
                link.close()
                raise QueueNotFound(dlq) from exc
            if last_tag:
                link.channel.basic_nack(last_tag, multiple=True, requeue=True)
            return found

        return self._producer.run(read)

    def replay_dead_letters(
        self, queue: str, *, limit: int | None = None, actor: str | None = None
    ) -> int:
        """Move dead letters of `queue` back onto it, retries reset; return how many.

        Each copy is confirmed by RabbitMQ before its dead letter is acknowledged, so a crash
        in between replays a message twice rather than losing it. Dead letters of other
        actors (with `actor`) keep their place in the DLQ.
        """
        target = names.original_queue(queue)
        dlq = names.dead_letter_queue(target)
        self.declare_queue(target)

        def replay(link: Link) -> int:
            moved, skipped_tag = 0, 0
            try:
                while limit is None or moved < limit:
                    method, properties, body = link.channel.basic_get(dlq, auto_ack=False)
                    if method is None:
                        break
                    headers = properties.headers or {}
                    if actor is not None and headers.get(names.HEADER_ACTOR) != actor:
                        skipped_tag = method.delivery_tag
                        continue
                    self._producer.publish([self._replayed(target, properties, body)])
                    link.channel.basic_ack(method.delivery_tag)
                    moved += 1
            except pika.exceptions.ChannelClosedByBroker as exc:
                link.close()
                raise QueueNotFound(dlq) from exc
            if skipped_tag:
                link.channel.basic_nack(skipped_tag, multiple=True, requeue=True)
            return moved

        return self._producer.run(replay)

    def _replayed(self, queue: str, properties: Any, body: bytes) -> Outgoing:
        headers = carried_headers(replay_headers(properties.headers or {}))
        try:
            message = self.codec.unpack(body, headers).copy(retries=0)
        except Exception:  # undecodable: replay the bytes as they are, it fails the same way
            headers[names.HEADER_RETRIES] = 0
        else:
            envelope = self.codec.pack(message)
            body, headers = envelope.body, {**headers, **envelope.headers}
        replayed = pika.BasicProperties(
            content_type=properties.content_type,
            delivery_mode=pika.DeliveryMode.Persistent,
            priority=properties.priority,
            message_id=properties.message_id,
            headers=headers,
        )
        return Outgoing("", queue, body, replayed)

    def _management(self) -> ManagementApi:
        # Imported on first use: workers never need urllib's HTTP and email stack.
        from actors.brokers.rabbitmq._admin import ManagementApi

        return ManagementApi(self.settings)

    def dead_letter_queues(self) -> dict[str, int]:
        """Every ``*.DLQ`` queue of the vhost with its ready messages (management API).

        Raises:
            BrokerConnectionError: The management API is not reachable.
        """
        found = sorted(
            q["name"] for q in self._management().queues() if names.is_dead_letter_queue(q["name"])
        )
        return {name: self._ready(name) for name in found}

    def queue_names(self) -> list[str]:
        """Names of every queue of the vhost (management API)."""
        return sorted(str(queue["name"]) for queue in self._management().queues())

    def delete_queue(self, queue: str) -> None:
        """Delete `queue` and the messages in it (tests, tools)."""

        def delete(link: Link) -> None:
            link.channel.queue_delete(queue)

        self._producer.run(delete)
        self._declared.discard(queue)
        self._declared.discard(names.original_queue(queue))

    def flush(self, timeout: float | None = None) -> None:
        """Wait until RabbitMQ confirmed every message that `send()` returned for.

        `send()` returns once the message is written (unless ``wait_for_confirms``); the
        producer keeps it until RabbitMQ's confirm comes, and publishes it again if the
        connection is lost first. `close()`, the queue operations and interpreter exit flush.

        Raises:
            PublishError: RabbitMQ refused a message sent since the last flush (nacked it,
                or found no queue for it); it was logged when read.
            ConnectionFailed: RabbitMQ could not be reached in time to send messages again.
        """
        self._producer.flush(timeout)

    def close(self) -> None:
        """Close the producer connections; async ones are closed on their own loops."""
        self._producer.close()
        for loop, publisher in list(self._async.items()):
            if not loop.is_closed() and loop.is_running():
                asyncio.run_coroutine_threadsafe(publisher.close(), loop)
        self._async.clear()

    async def close_async(self) -> None:
        """Close the connection that `send_async` opened on the running loop."""
        publisher = self._async.pop(asyncio.get_running_loop(), None)
        if publisher is not None:
            await publisher.close()
