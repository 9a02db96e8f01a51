"""The consumer: a pika SelectConnection driven by an I/O thread of its own.

No actor can block this thread, so heartbeats keep flowing whatever the actors do. Deliveries
are handed to the worker from this thread; settlements from worker threads are queued and
applied here in batches, one wake-up per batch, and acknowledged with ``multiple=True`` up to
the oldest delivery still in progress. Moving a message (dead-lettering, giving it back, the
poison guard) publishes a copy with a publisher confirm and acknowledges the original only
once RabbitMQ confirmed the copy: at-least-once, never lost in between.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import pika
import pika.exceptions
from pika.adapters.select_connection import IOLoop

from actors import names
from actors.broker import Consumer, DeliveryHandler
from actors.brokers.rabbitmq._sync import backoff, describe_server
from actors.brokers.rabbitmq._topology import BROKER_HEADER_PREFIX
from actors.delivery import Delivery, Failure
from actors.errors import BrokerConnectionError, BrokerError, ConnectionClosed, PublishError

if TYPE_CHECKING:
    from actors.brokers.rabbitmq._broker import RabbitmqBroker

logger = logging.getLogger("actors.brokers.rabbitmq")

_MOVE_WAIT = 60.0  # seconds a worker thread waits for a move's confirm before giving up
_CLOSE_GRACE = 5.0  # seconds close() waits for moves still unconfirmed


def carried_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """Headers kept when we republish a delivery: RabbitMQ's own ``x-death`` ... dropped."""
    return {k: v for k, v in headers.items() if not k.startswith(BROKER_HEADER_PREFIX)}


class RabbitmqDelivery(Delivery):
    """A delivery from RabbitMQ; settling it is safe from any thread."""

    __slots__ = ("_consumer", "_generation", "_properties", "tag")

    def __init__(
        self,
        consumer: RabbitmqConsumer,
        queue: str,
        body: bytes,
        properties: pika.BasicProperties,
        method: Any,
        generation: int,
    ) -> None:
        headers = properties.headers or {}
        # A copy made by the poison guard was delivered before, as the original.
        redelivered = method.redelivered or names.HEADER_DELIVERIES in headers
        super().__init__(queue, body, headers, redelivered=redelivered)
        self._consumer = consumer
        self._properties = properties
        self._generation = generation
        self.tag: int = method.delivery_tag

    def ack(self) -> None:
        self._consumer.submit(self)

    def dead_letter(self, failure: Failure) -> None:
        headers = carried_headers(self.headers)
        headers.update(failure.headers())
        headers[names.HEADER_ORIGINAL_QUEUE] = self.queue
        self._consumer.move(self, names.dead_letter_queue(self.queue), headers)

    def requeue(self) -> None:
        # A copy, not a nack: a nacked message comes back flagged as redelivered, which the
        # poison guard would count as a delivery that killed its worker.
        self._consumer.move(self, self.queue, carried_headers(self.headers))


class _Move:
    """A copy being published for `delivery`; the original is acked once it is confirmed."""

    __slots__ = ("delivery", "done", "message_id", "refused")

    def __init__(self, delivery: RabbitmqDelivery, done: Future[None] | None) -> None:
        self.delivery = delivery
        self.done = done
        self.message_id = delivery._properties.message_id
        self.refused: str | None = None


class RabbitmqConsumer(Consumer):
    """Consumes `queues` with at most `prefetch` unsettled deliveries, reconnecting as needed."""

    def __init__(
        self,
        broker: RabbitmqBroker,
        queues: Sequence[str],
        prefetch: int,
        handler: DeliveryHandler,
    ) -> None:
        self._broker = broker
        self._settings = broker.settings
        self._queues = list(queues)
        self._prefetch = max(1, prefetch)
        self._handler = handler
        self._guard = self._settings.max_deliveries is not None and (
            self._settings.queue_type == "classic"
        )
        self._server = describe_server(self._settings.url)
        self._ioloop = IOLoop()
        self._thread: threading.Thread | None = None
        self._connection: pika.SelectConnection | None = None
        self._channel: Any = None
        self._generation = 0
        self._consumer_tags: dict[str, str] = {}  # consumer tag -> queue
        # I/O thread only:
        self._unsettled: dict[int, RabbitmqDelivery] = {}
        self._order: collections.deque[int] = collections.deque()
        self._acked: list[int] = []
        self._moves: dict[int, _Move] = {}  # publish sequence number -> move
        self._published = 0
        self._returned: dict[str | None, str] = {}
        self._attempt = 0
        # Shared with other threads:
        self._inbox: collections.deque[RabbitmqDelivery | Callable[[], None]] = collections.deque()
        self._wake_pending = False
        self.in_flight: collections.Counter[str] = collections.Counter()
        self._started = threading.Event()
        self._fatal: BaseException | None = None
        self._stopping = False
        self._closing = False

    # -- lifecycle (any thread) -----------------------------------------------------------------

    def start(self) -> None:
        """Start the I/O thread; wait (bounded) until it consumes, or log that it keeps trying.

        Raises:
            QueueConflict: A queue exists with other arguments (no point retrying).
        """
        self._thread = threading.Thread(target=self._run, name="actors-rabbitmq-io", daemon=True)
        self._ioloop.add_callback_threadsafe(self._connect)
        self._thread.start()
        if not self._started.wait(self._settings.connect_timeout):
            logger.warning(
                "RabbitMQ at %s is not reachable yet; the worker keeps trying in the background",
                self._server,
            )
        if self._fatal is not None:
            self._thread.join(timeout=5)
            raise self._fatal

    def stop(self) -> None:
        """Cancel the consumers; deliveries already handed over can still be settled."""
        cancelled = threading.Event()
        self.submit(lambda: self._cancel(cancelled))
        cancelled.wait(timeout=5)

    def close(self) -> None:
        """Apply pending settlements, wait (bounded) for moves, then close the connection."""
        if self._thread is None or not self._thread.is_alive():
            return
        self.submit(self._begin_close)
        self._thread.join(timeout=_CLOSE_GRACE + 5)

    def sync(self, timeout: float = 5.0) -> None:
        """Wait until every delivery RabbitMQ sent before this call was handed to the worker.

        A channel round trip (``basic.qos``) answers after the deliveries sent before it.
        """
        answered = threading.Event()

        def ask() -> None:
            if self._channel is not None and self._channel.is_open:
                self._channel.basic_qos(
                    prefetch_count=self._prefetch, callback=lambda _frame: answered.set()
                )
            else:
                answered.set()

        if self._thread is not None and self._thread.is_alive():
            self.submit(ask)
            answered.wait(timeout)

    # -- from other threads to the I/O thread ----------------------------------------------------

    def submit(self, item: RabbitmqDelivery | Callable[[], None]) -> None:
        """Queue an ack (a delivery) or a call for the I/O thread; wake it once per batch."""
        self._inbox.append(item)
        # Append before testing the flag: the I/O thread clears the flag before it drains,
        # so an item is either drained by a pass already scheduled or schedules a new one.
        if not self._wake_pending:
            self._wake_pending = True
            self._ioloop.add_callback_threadsafe(self._drain)

    def move(self, delivery: RabbitmqDelivery, queue: str, headers: dict[str, Any]) -> None:
        """Publish a confirmed copy of `delivery` to `queue`, then ack the original.

        From a worker thread this waits for the confirm; on the I/O thread it cannot, and a
        failure is logged and the original given back with a nack instead.

        Raises:
            PublishError: RabbitMQ refused the copy (the original stays unsettled).
            ConnectionClosed: The connection dropped first (the original is redelivered).
        """
        on_io_thread = threading.current_thread() is self._thread
        done: Future[None] | None = None if on_io_thread else Future()
        self.submit(lambda: self._start_move(delivery, queue, headers, done))
        if done is not None:
            done.result(timeout=_MOVE_WAIT)

    # -- the I/O thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._ioloop.start()
        finally:
            self._started.set()
            self._ioloop.close()

    def _drain(self) -> None:
        self._wake_pending = False
        inbox = self._inbox
        while inbox:
            item = inbox.popleft()
            if isinstance(item, RabbitmqDelivery):
                self._settle(item)
            else:
                item()
        self._flush_acks()

    def _settle(self, delivery: RabbitmqDelivery) -> None:
        if delivery._generation != self._generation:
            return  # from a connection that is gone: RabbitMQ already gave it back
        if self._unsettled.pop(delivery.tag, None) is not None:
            self.in_flight[delivery.queue] -= 1
            self._acked.append(delivery.tag)

    def _flush_acks(self) -> None:
        if not self._acked or self._channel is None or not self._channel.is_open:
            self._acked.clear()
            return
        order, unsettled = self._order, self._unsettled
        while order and order[0] not in unsettled:
            order.popleft()
        oldest = order[0] if order else None
        below = [tag for tag in self._acked if oldest is None or tag < oldest]
        if below:
            self._channel.basic_ack(max(below), multiple=True)
        if len(below) < len(self._acked):
            for tag in self._acked:
                if oldest is not None and tag > oldest:
                    self._channel.basic_ack(tag)
        self._acked.clear()

    # -- connecting --------------------------------------------------------------------------------

    def _connect(self) -> None:
        if self._closing:
            self._ioloop.stop()
            return
        try:
            for queue in self._queues:
                self._broker.declare_queue(queue, force=True, timeout=2.0)
        except BrokerError as exc:
            if not isinstance(exc, BrokerConnectionError):
                self._fatal = exc
                self._ioloop.stop()
                return
            self._retry_later(exc)
            return
        self._connection = pika.SelectConnection(
            self._settings.connection_parameters("consumer"),
            on_open_callback=self._on_connection_open,
            on_open_error_callback=lambda _conn, exc: self._retry_later(exc),
            on_close_callback=self._on_connection_closed,
            custom_ioloop=self._ioloop,
        )

    def _retry_later(self, error: BaseException) -> None:
        self._connection = None
        if self._closing:
            self._ioloop.stop()
            return
        pause = backoff(self._attempt, first=0.2, cap=5.0)
        level = logging.WARNING if self._attempt % 10 == 0 else logging.DEBUG
        logger.log(level, "RabbitMQ at %s unreachable (%s); retrying in %.1fs",
                   self._server, error, pause)  # fmt: skip
        self._attempt += 1
        self._ioloop.call_later(pause, self._connect)

    def _on_connection_open(self, connection: pika.SelectConnection) -> None:
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_channel_open(self, channel: Any) -> None:
        self._channel = channel
        self._published = 0
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.add_on_cancel_callback(self._on_cancelled)
        channel.confirm_delivery(
            ack_nack_callback=self._on_confirm,
            callback=lambda _frame: channel.basic_qos(
                prefetch_count=self._prefetch, callback=lambda _ok: self._consume(channel)
            ),
        )

    def _consume(self, channel: Any) -> None:
        if self._stopping:
            self._started.set()
            return
        for queue in self._queues:
            tag = channel.basic_consume(queue, self._on_message, auto_ack=False)
            self._consumer_tags[tag] = queue
        if self._attempt:
            logger.info("consuming from RabbitMQ at %s again", self._server)
        self._attempt = 0
        self._started.set()

    def _on_channel_closed(self, _channel: Any, reason: BaseException) -> None:
        self._channel = None
        connection = self._connection
        if connection is not None and connection.is_open:
            logger.warning("RabbitMQ closed the consumer channel (%s); reconnecting", reason)
            connection.close()

    def _on_connection_closed(self, _connection: Any, reason: BaseException) -> None:
        self._forget_deliveries(reason)
        self._channel = None
        self._connection = None
        if self._closing:
            self._ioloop.stop()
        elif self._stopping:
            self._started.set()
        else:
            self._retry_later(reason)

    def _forget_deliveries(self, reason: BaseException) -> None:
        """The connection is gone: RabbitMQ requeued its unsettled deliveries itself."""
        self._generation += 1
        self._unsettled.clear()
        self._order.clear()
        self._acked.clear()
        self.in_flight.clear()
        self._consumer_tags.clear()
        for move in self._moves.values():
            if move.done is not None and not move.done.done():
                move.done.set_exception(ConnectionClosed(f"connection lost: {reason}"))
        self._moves.clear()

    def _on_cancelled(self, frame: Any) -> None:
        queue = self._consumer_tags.pop(frame.method.consumer_tag, "?")
        logger.warning("RabbitMQ cancelled the consumer of %r (queue deleted?)", queue)

    # -- deliveries --------------------------------------------------------------------------------

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        queue = self._consumer_tags.get(method.consumer_tag, "")
        delivery = RabbitmqDelivery(self, queue, body, properties, method, self._generation)
        self._unsettled[delivery.tag] = delivery
        self._order.append(delivery.tag)
        self.in_flight[queue] += 1
        try:
            if method.redelivered and self._guard:
                self._guard_redelivery(delivery)
            else:
                self._handler(delivery)
        except Exception:  # nothing one message does may kill the I/O thread
            logger.exception("delivery handler failed on %s; giving it back", delivery.message_id)
            channel.basic_nack(delivery.tag, requeue=True)
            self._unsettled.pop(delivery.tag, None)
            self.in_flight[queue] -= 1

    def _guard_redelivery(self, delivery: RabbitmqDelivery) -> None:
        """Count a delivery that was not settled (its worker died) before running it again."""
        seen = delivery.deliveries
        limit = self._settings.max_deliveries
        assert limit is not None
        headers = carried_headers(delivery.headers)
        if seen >= limit:
            text = f"delivered {seen} times and never settled (its worker died or was cut off)"
            logger.error("message %s is poison: %s", delivery.message_id, text)
            headers.update(Failure("poison", "", text).headers())
            headers[names.HEADER_ORIGINAL_QUEUE] = delivery.queue
            self._start_move(delivery, names.dead_letter_queue(delivery.queue), headers, None)
        else:
            headers[names.HEADER_DELIVERIES] = seen
            self._start_move(delivery, delivery.queue, headers, None)

    # -- moves (publish a copy with a confirm, then ack the original) ------------------------------

    def _start_move(
        self,
        delivery: RabbitmqDelivery,
        queue: str,
        headers: dict[str, Any],
        done: Future[None] | None,
    ) -> None:
        channel = self._channel
        if delivery._generation != self._generation or delivery.tag not in self._unsettled:
            if done is not None:
                done.set_result(None)  # already given back by RabbitMQ, or settled before
            return
        if channel is None or not channel.is_open:
            if done is not None:
                done.set_exception(ConnectionClosed("the consumer's connection is down"))
            return
        original = delivery._properties
        properties = pika.BasicProperties(
            content_type=original.content_type,
            delivery_mode=pika.DeliveryMode.Persistent,
            priority=original.priority,
            message_id=original.message_id,
            headers=headers,
        )
        channel.basic_publish("", queue, delivery.body, properties, mandatory=True)
        self._published += 1
        self._moves[self._published] = _Move(delivery, done)

    def _on_return(self, _channel: Any, method: Any, properties: Any, _body: bytes) -> None:
        self._returned[properties.message_id] = f"unroutable: no queue {method.routing_key!r}"

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        nacked = isinstance(method, pika.spec.Basic.Nack)
        if method.multiple:
            tags = [tag for tag in self._moves if tag <= method.delivery_tag]
        else:
            tags = [method.delivery_tag]
        for tag in tags:
            move = self._moves.pop(tag, None)
            if move is not None:
                refused = (
                    "nacked by RabbitMQ" if nacked else self._returned.pop(move.message_id, None)
                )
                self._finish_move(move, refused)
        self._flush_acks()
        if self._closing and not self._moves:
            self._close_connection()

    def _finish_move(self, move: _Move, refused: str | None) -> None:
        delivery = move.delivery
        if refused is None:
            self._settle(delivery)
            if move.done is not None:
                move.done.set_result(None)
            return
        error = PublishError(f"could not move {delivery.message_id}: {refused}",
                             message_id=delivery.message_id)  # fmt: skip
        if move.done is not None:
            move.done.set_exception(error)
        else:
            logger.error("%s; giving it back to %r", error, delivery.queue)
            if self._channel is not None and self._channel.is_open:
                self._channel.basic_nack(delivery.tag, requeue=True)
            if self._unsettled.pop(delivery.tag, None) is not None:
                self.in_flight[delivery.queue] -= 1

    # -- stopping ----------------------------------------------------------------------------------

    def _cancel(self, cancelled: threading.Event) -> None:
        self._stopping = True
        channel = self._channel
        tags = list(self._consumer_tags)
        if channel is None or not channel.is_open or not tags:
            cancelled.set()
            return
        left = set(tags)

        def on_cancel_ok(frame: Any) -> None:
            left.discard(frame.method.consumer_tag)
            if not left:
                cancelled.set()

        for tag in tags:
            channel.basic_cancel(tag, callback=on_cancel_ok)

    def _begin_close(self) -> None:
        self._closing = True
        self._stopping = True
        self._flush_acks()
        if self._connection is None:
            self._ioloop.stop()
        elif not self._moves:
            self._close_connection()
        else:
            self._ioloop.call_later(_CLOSE_GRACE, self._close_connection)

    def _close_connection(self) -> None:
        connection = self._connection
        if connection is None or connection.is_closed:
            self._ioloop.stop()
        elif not connection.is_closing:
            connection.close()  # the close (or open-error) callback then stops the loop
