"""The consumer: one AMQP connection (`_amqp_link`), read by the worker's idle threads.

A worker thread with nothing to do reads the connection itself (`read`, one thread at a time)
and runs what it took, so that a message reaches its actor without waking another thread.
The consumer's own I/O thread connects, reconnects, and reads whenever no worker thread has
read for `_STALL` seconds (all of them busy): no actor can keep heartbeats, replies and new
deliveries from being read for longer than that.

Worker threads settle deliveries themselves: an ack is written by the thread that finished
the message, acks that pile up meanwhile go out together (``multiple=True`` up to the oldest
delivery still in progress; those above it wait, bounded, to be covered by the next one), and
no other thread has to wake up for it. Moving a message (dead-lettering, giving it back, the
poison guard) publishes a copy with a publisher confirm and acknowledges the original only
once RabbitMQ confirmed the copy: at-least-once, never lost in between.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from typing import TYPE_CHECKING, Any

from actors import names
from actors.broker import Consumer, DeliveryHandler
from actors.brokers.rabbitmq import _amqp_codec as wire
from actors.brokers.rabbitmq._amqp_link import CHANNEL, AmqpLink, LinkClosed
from actors.brokers.rabbitmq._sync import backoff, describe_server
from actors.brokers.rabbitmq._topology import BROKER_HEADER_PREFIX
from actors.delivery import Delivery, Failure
from actors.errors import BrokerConnectionError, BrokerError, ConnectionClosed, PublishError

if TYPE_CHECKING:
    from actors.brokers.rabbitmq._broker import RabbitmqBroker

logger = logging.getLogger("actors.brokers.rabbitmq")

_MOVE_WAIT = 60.0  # seconds a worker thread waits for a move's confirm before giving up
_CLOSE_GRACE = 5.0  # seconds close() waits for moves still unconfirmed
# Seconds the connection may go unread (every worker thread busy) before the I/O thread reads.
# Worker threads that wait for work read as soon as they are idle; this bounds how late
# heartbeats, confirms, replies and deliveries for free async slots are read meanwhile.
_STALL = 0.05


def _fail(done: Future[None] | None, error: BaseException) -> None:
    """Fail `done` unless it is settled already (the I/O thread and a worker may both try)."""
    if done is not None:
        with contextlib.suppress(InvalidStateError):
            done.set_exception(error)


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
        properties: wire.Properties,
        tag: int,
        redelivered: bool,
        generation: int,
    ) -> None:
        headers = properties.headers or {}
        # A copy made by the poison guard was delivered before, as the original.
        redelivered = redelivered or names.HEADER_DELIVERIES in headers
        super().__init__(queue, body, headers, redelivered=redelivered)
        self._consumer = consumer
        self._properties = properties
        self._generation = generation
        self.tag = tag

    def ack(self) -> None:
        self._consumer.ack(self)

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

    __slots__ = ("delivery", "done", "message_id")

    def __init__(self, delivery: RabbitmqDelivery, done: Future[None] | None) -> None:
        self.delivery = delivery
        self.done = done
        self.message_id = delivery._properties.message_id


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
        self._set_limits(prefetch)
        self._handler = handler
        self._guard = self._settings.max_deliveries is not None and (
            self._settings.queue_type == "classic"
        )
        self._server = describe_server(self._settings.url)
        self._thread: threading.Thread | None = None
        self._link: AmqpLink | None = None
        self._attempt = 0
        self._started = threading.Event()
        self._wake = threading.Event()  # cuts a reconnect pause short when closing
        self._fatal: BaseException | None = None
        self._stopping = False
        self._closing = False
        # Guarded by _lock (never held while writing to the link):
        self._lock = threading.Lock()
        self._generation = 0
        self._consumer_tags: dict[str, str] = {}  # consumer tag -> queue
        # Held while consumers are started or cancelled (never while taking _lock): a
        # new consumer (set_prefetch) cannot slip in after stop() cancelled the others. So
        # stop() may wait for a reconnect's qos and consume calls (bounded by socket_timeout).
        self._subscribing = threading.Lock()
        self._subscriptions = 0
        self._unsettled: dict[int, RabbitmqDelivery] = {}
        self._order: collections.deque[int] = collections.deque()
        self._acked: list[int] = []
        self._flushing = False
        self._moves: dict[int, _Move] = {}  # publish sequence number -> move
        self._moves_done = threading.Condition(self._lock)
        self._published = 0
        self._returned: dict[str | None, str] = {}
        self.in_flight: collections.Counter[str] = collections.Counter()
        # The reading role: at most one thread reads the link at a time (see `read`).
        self._role = threading.Condition(threading.Lock())
        self._reader: threading.Thread | None = None
        self._last_reader: threading.Thread | None = None
        self._read_ended = time.monotonic()
        self._serving: AmqpLink | None = None  # the link worker threads may read, once consuming
        self._reader_wanted: Callable[[], bool] = lambda: False

    # -- lifecycle (any thread) -----------------------------------------------------------------

    def start(self) -> None:
        """Start the I/O thread; wait (bounded) until it consumes, or log that it keeps trying.

        Raises:
            QueueConflict: A queue exists with other arguments (no point retrying).
        """
        self._thread = threading.Thread(target=self._run, name="actors-rabbitmq-io", daemon=True)
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
        with self._subscribing:
            self._stopping = True
            link = self._link
            with self._lock:
                tags = list(self._consumer_tags)
            if link is None or not tags:
                return
            left = set(tags)

            def cancel_ok(tag: str) -> None:
                left.discard(tag)
                if not left:
                    cancelled.set()

            try:
                for tag in tags:
                    self._cancel_consumer(link, tag, then=cancel_ok)
            except LinkClosed:
                return
        cancelled.wait(timeout=5)

    def set_prefetch(self, prefetch: int) -> None:
        """Take up to `prefetch` deliveries ahead from now on.

        RabbitMQ fixes a consumer's prefetch when it starts, so each queue gets a new consumer
        before the old one is cancelled. Deliveries the old consumer received stay ours to
        settle: none is given back, and none is delivered twice. Until they are settled, the
        old and the new prefetch are both taken. Waits for RabbitMQ's replies to the new
        consumers: not for the I/O thread.
        """
        with self._subscribing:
            with self._lock:
                if max(1, prefetch) == self._prefetch:
                    return
                self._set_limits(prefetch)
                link, old = self._link, list(self._consumer_tags)
                if link is None or not old or self._stopping:
                    return  # not consuming: the next connection starts with the new prefetch
                new = self._new_consumer_tags()
            try:
                link.request(wire.BASIC_QOS, wire.qos(self._prefetch), wire.BASIC_QOS_OK)
                for tag, queue in new.items():
                    # Awaited: RabbitMQ 3.10's channel crashes (INTERNAL_ERROR, and every
                    # unacked delivery comes back) when a consumer is cancelled before its
                    # consume-ok went out, e.g. by the next change while the queue is busy.
                    link.request(
                        wire.BASIC_CONSUME, wire.consume(queue, tag), wire.BASIC_CONSUME_OK, tag
                    )
                for tag in old:
                    self._cancel_consumer(link, tag)
            except LinkClosed as exc:
                # Gone, or a reply did not come in time: either way the link is dropped, so that
                # no consumer stays half started, and the reconnect consumes with the new prefetch.
                link.cut(f"changing the prefetch: {exc}")

    def _set_limits(self, prefetch: int) -> None:
        """Set the prefetch and the ack batching that follows from it (under the lock)."""
        self._prefetch = max(1, prefetch)
        # Acks wait for this many to go out together while other deliveries are in progress
        # (RabbitMQ spends several times less per message on one ack for a few than on one
        # each); the last one in progress and the link's tick (0.2 s) send them regardless.
        self._ack_batch = max(1, self._prefetch // 4)
        # Acks of deliveries newer than the oldest one in progress wait for it, to go out with
        # it in one multiple ack rather than one frame each (threads finish out of order); at
        # most this many wait, and never past the link's next tick.
        self._hold_max = max(1, self._prefetch // 2)

    def _new_consumer_tags(self) -> dict[str, str]:
        """Name a new consumer for each queue and map its tag to the queue (under the lock)."""
        self._subscriptions += 1
        base = f"actors.{os.getpid()}.{self._generation}.{self._subscriptions}"
        new = {f"{base}.{index}": queue for index, queue in enumerate(self._queues)}
        self._consumer_tags.update(new)
        return new

    def _cancel_consumer(
        self, link: AmqpLink, tag: str, then: Callable[[str], None] = lambda _tag: None
    ) -> None:
        """Cancel consumer `tag`; at its cancel-ok, forget the tag (RabbitMQ sends nothing more
        under it) and call `then` with it."""

        def cancelled() -> None:
            with self._lock:
                self._consumer_tags.pop(tag, None)
            then(tag)

        link.request_async(
            wire.BASIC_CANCEL, wire.cancel(tag), wire.BASIC_CANCEL_OK, cancelled, consumer_tag=tag
        )

    def close(self) -> None:
        """Send pending acks, wait (bounded) for moves, then close the connection."""
        if self._thread is None or not self._thread.is_alive():
            return
        self._closing = self._stopping = True
        self._wake.set()
        self._flush_if_idle()
        with self._moves_done:
            self._moves_done.wait_for(lambda: not self._moves, timeout=_CLOSE_GRACE)
        link = self._link
        if link is not None:
            link.close()
        self._thread.join(timeout=_CLOSE_GRACE + 5)

    def sync(self, timeout: float = 5.0) -> None:
        """Wait until every delivery RabbitMQ sent before this call was handed to the worker.

        A channel round trip (``basic.qos``) answers after the deliveries sent before it.
        """
        link = self._link
        if link is None or self._reading_here():
            return
        answered = threading.Event()
        try:
            with self._subscribing:  # else it could set the old prefetch amid a change
                link.request_async(
                    wire.BASIC_QOS, wire.qos(self._prefetch), wire.BASIC_QOS_OK, answered.set
                )
        except LinkClosed:
            return
        answered.wait(timeout)

    # -- settling (any thread) ------------------------------------------------------------------

    def ack(self, delivery: RabbitmqDelivery) -> None:
        """Acknowledge `delivery` (with others that piled up meanwhile)."""
        if self._settle(delivery):
            self._flush()

    def _settle(self, delivery: RabbitmqDelivery) -> bool:
        """Mark `delivery` acked; True if this thread should now send the pending acks."""
        with self._lock:
            if delivery._generation != self._generation:
                return False  # from a connection that is gone: RabbitMQ already gave it back
            if self._unsettled.pop(delivery.tag, None) is None:
                return False
            self.in_flight[delivery.queue] -= 1
            self._acked.append(delivery.tag)
            if self._flushing:
                return False  # the thread sending acks right now takes this one too
            if len(self._acked) < self._ack_batch and self._unsettled:
                return False  # batched: sent with later ones, or by the next tick
            self._flushing = True
            return True

    def _flush_if_idle(self) -> None:
        """Send every pending ack, held ones too, unless another thread is sending acks."""
        with self._lock:
            idle, self._flushing = not self._flushing, True
        if idle:
            self._flush(hold=False)

    def _flush(self, *, hold: bool = True) -> None:
        """Send the pending acks until none are left to send (one thread at a time does this).

        With `hold`, acks above the oldest delivery in progress may stay pending (see
        `_ack_frames`), unless the consumer is closing.
        """
        while True:
            with self._lock:
                frames = self._ack_frames(hold and not self._closing)
                link = self._link
                if not frames or link is None:
                    if link is None:
                        self._acked.clear()
                    self._flushing = False
                    return
            # If the link is gone, RabbitMQ gives the unacked deliveries back itself.
            with contextlib.suppress(LinkClosed):
                link.send_frames(frames)

    def _ack_frames(self, hold: bool) -> bytes:
        """The ack frames for the pending acks (under the lock); held acks stay pending.

        Acks below the oldest delivery in progress go out as one ``multiple=True`` ack. Those
        above it are held (to be covered by that multiple ack once it finishes) while `hold`
        and fewer than `_hold_max` wait; otherwise each goes out as a single ack.
        """
        acked = self._acked
        if not acked:
            return b""
        order, unsettled = self._order, self._unsettled
        while order and order[0] not in unsettled:
            order.popleft()
        ack_frame = wire.ack_frame
        if not order:
            frames = ack_frame(CHANNEL, max(acked), True)
            acked.clear()
            return frames
        oldest = order[0]
        below = [tag for tag in acked if tag < oldest]
        above = [tag for tag in acked if tag > oldest]
        frames = ack_frame(CHANNEL, max(below), True) if below else b""
        if above and (not hold or len(above) >= self._hold_max):
            frames += b"".join(ack_frame(CHANNEL, tag, False) for tag in above)
            above.clear()
        acked[:] = above
        return frames

    def move(self, delivery: RabbitmqDelivery, queue: str, headers: dict[str, Any]) -> None:
        """Publish a confirmed copy of `delivery` to `queue`, then ack the original.

        From a worker thread this waits for the confirm; on a thread that is reading the
        connection it cannot (the confirm would come through it), and a failure is logged
        and the original given back with a nack instead.

        Raises:
            PublishError: RabbitMQ refused the copy (the original stays unsettled).
            ConnectionClosed: The connection dropped first (the original is redelivered).
        """
        done: Future[None] | None = None if self._reading_here() else Future()
        self._start_move(delivery, queue, headers, done)
        if done is not None:
            done.result(timeout=_MOVE_WAIT)

    def _start_move(
        self,
        delivery: RabbitmqDelivery,
        queue: str,
        headers: dict[str, Any],
        done: Future[None] | None,
    ) -> None:
        with self._lock:
            link = self._link
            settled = delivery._generation != self._generation or (
                delivery.tag not in self._unsettled
            )
        if settled:
            if done is not None:
                done.set_result(None)  # already given back by RabbitMQ, or settled before
            return
        if link is None:
            _fail(done, ConnectionClosed("the consumer's connection is down"))
            return
        original = delivery._properties
        properties = wire.Properties(
            content_type=original.content_type,
            headers=headers,
            delivery_mode=2,
            priority=original.priority,
            message_id=original.message_id,
        )

        def register() -> None:
            with self._lock:
                self._published += 1
                self._moves[self._published] = _Move(delivery, done)

        try:
            link.publish(queue, properties, delivery.body, register)
        except LinkClosed as exc:
            _fail(done, ConnectionClosed(f"connection lost: {exc}"))

    # -- the I/O thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._closing:
                link = self._connect()
                if link is None:
                    continue
                try:
                    self._serve(link)
                except (LinkClosed, OSError) as exc:
                    self._lost(exc)
                    if not self._closing:
                        logger.warning("lost the RabbitMQ consumer connection (%s); reconnecting",
                                       exc)  # fmt: skip
                        self._pause(exc)
                else:
                    self._lost(LinkClosed("closed"))
        finally:
            self._started.set()

    # -- the reading role (worker threads and the I/O thread) -------------------------------------

    def read(self) -> bool:
        """Read the connection once on this (idle worker) thread, unless another thread is.

        Deliveries go to the handler on this thread. Returns False when another thread is
        reading or nothing is being consumed; else True, after at most one read timeout
        (0.2 s) when nothing arrives.
        """
        link = self._serving
        if link is None:
            return False
        with self._role:
            # Checked under the role: a link cut by the previous reader is not read again.
            if self._reader is not None or link.closed or self._serving is not link:
                return False
            self._reader = threading.current_thread()
        self._read_step_and_drop_role(link)
        return True

    def on_reader_wanted(self, callback: Callable[[], bool]) -> None:
        self._reader_wanted = callback

    def _reading_here(self) -> bool:
        """Whether this thread is reading the connection (or is the I/O thread, which reads
        while it connects): then it must not wait for anything that comes by reading."""
        current = threading.current_thread()
        return self._reader is current or self._thread is current

    def _read_step_and_drop_role(self, link: AmqpLink) -> None:
        """Read `link` once on this thread, which holds the reading role, then give it up."""
        try:
            link.read_step()
        finally:
            self._drop_role()

    def _drop_role(self) -> None:
        with self._role:
            self._last_reader, self._reader = self._reader, None
            self._read_ended = time.monotonic()
            if self._serving is None:
                self._role.notify_all()  # the I/O thread waits to close the link

    def _serve(self, link: AmqpLink) -> None:
        """Read `link` while no worker thread does (I/O thread).

        Reads on while no worker thread is idle to take over, and hands over as soon as one
        is; after that, reads only when the link has gone unread for `_STALL`. Once the link
        is closed, waits for the thread reading it (if any) and finishes it.

        Raises:
            LinkClosed: The link closed other than by our own close.
        """
        link.serve_from_here()
        self._serving = link
        handed_over = False
        try:
            while self._take_role(link, handed_over=handed_over):
                self._read_step_and_drop_role(link)
                handed_over = self._reader_wanted()
        finally:
            with self._role:
                self._serving = None
                while self._reader is not None:
                    self._role.wait()  # a worker thread's read ends within its timeout
                self._reader = threading.current_thread()
            try:
                link.finish()
            finally:
                self._drop_role()

    def _take_role(self, link: AmqpLink, *, handed_over: bool) -> bool:
        """Take the reading role for the I/O thread; False once the link is closed.

        Right away if this thread read last and handed over to no worker thread; else once
        the role has been free for `_STALL` (the worker threads are all busy).
        """
        me = threading.current_thread()
        with self._role:
            while not link.closed:
                reading_on = not handed_over and self._last_reader is me
                unread = _STALL if reading_on else time.monotonic() - self._read_ended
                if self._reader is None and unread >= _STALL:
                    self._reader = me
                    return True
                self._role.wait(_STALL if self._reader is not None else _STALL - unread)
        return False

    def _connect(self) -> AmqpLink | None:
        """Declare the queues and open a consuming link; None after a failure (paused)."""
        try:
            for queue in self._queues:
                self._broker.declare_queue(queue, force=True, timeout=2.0)
        except BrokerError as exc:
            if not isinstance(exc, BrokerConnectionError):
                self._fatal = exc
                self._closing = True
                return None
            self._pause(exc)
            return None
        link = AmqpLink(self._settings.connection_parameters("consumer"), self)
        try:
            link.open()
            with self._lock:
                self._link = link
                self._published = 0
            with self._subscribing:
                link.call(wire.BASIC_QOS, wire.qos(self._prefetch), wire.BASIC_QOS_OK)
                if not self._stopping:
                    with self._lock:
                        tags = self._new_consumer_tags()
                    for tag, queue in tags.items():
                        link.call(
                            wire.BASIC_CONSUME, wire.consume(queue, tag), wire.BASIC_CONSUME_OK
                        )
        except (LinkClosed, OSError, wire.ProtocolError) as exc:
            self._lost(exc)
            link.close(timeout=1.0)
            self._pause(exc)
            return None
        if self._attempt:
            logger.info("consuming from RabbitMQ at %s again", self._server)
        self._attempt = 0
        self._started.set()
        return link

    def _pause(self, error: BaseException) -> None:
        if self._closing:
            return
        pause = backoff(self._attempt, first=0.2, cap=5.0)
        level = logging.WARNING if self._attempt % 10 == 0 else logging.DEBUG
        logger.log(level, "RabbitMQ at %s unreachable (%s); retrying in %.1fs",
                   self._server, error, pause)  # fmt: skip
        self._attempt += 1
        self._wake.wait(pause)

    def _lost(self, reason: BaseException) -> None:
        """The connection is gone: RabbitMQ requeued its unsettled deliveries itself."""
        with self._lock:
            self._link = None
            self._generation += 1
            self._unsettled.clear()
            self._order.clear()
            self._acked.clear()
            self.in_flight.clear()
            self._consumer_tags.clear()
            moves = list(self._moves.values())
            self._moves.clear()
            self._returned.clear()
            self._moves_done.notify_all()
        for move in moves:
            _fail(move.done, ConnectionClosed(f"connection lost: {reason}"))

    # -- events from the link (the thread reading it) --------------------------------------------

    def on_deliver(
        self, consumer_tag: str, tag: int, redelivered: bool, props: wire.Properties, body: bytes
    ) -> None:
        with self._lock:
            queue = self._consumer_tags.get(consumer_tag, "")
            delivery = RabbitmqDelivery(
                self, queue, body, props, tag, redelivered, self._generation
            )
            self._unsettled[tag] = delivery
            self._order.append(tag)
            self.in_flight[queue] += 1
        try:
            if redelivered and self._guard:
                self._guard_redelivery(delivery)
            else:
                self._handler(delivery)
        except Exception:  # nothing one message does may kill the I/O thread
            logger.exception("delivery handler failed on %s; giving it back", delivery.message_id)
            self._give_back(delivery)

    def _give_back(self, delivery: RabbitmqDelivery) -> None:
        """Nack `delivery` so that RabbitMQ requeues it.

        It stays unsettled until the nack is written: a multiple ack sent meanwhile by another
        thread then stops below it instead of acking it unprocessed.
        """
        with self._lock:
            if delivery._generation != self._generation or delivery.tag not in self._unsettled:
                return  # settled already, or its connection is gone (RabbitMQ gave it back)
            link = self._link
        if link is not None:
            with contextlib.suppress(LinkClosed):  # if gone, RabbitMQ gives it back anyway
                link.send_method(wire.BASIC_NACK, wire.nack(delivery.tag, True))
        with self._lock:
            if delivery._generation == self._generation and (
                self._unsettled.pop(delivery.tag, None) is not None
            ):
                self.in_flight[delivery.queue] -= 1

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

    def on_return(self, reason: str, routing_key: str, props: wire.Properties) -> None:
        with self._lock:
            self._returned[props.message_id] = f"unroutable: no queue {routing_key!r}"

    def on_confirm(self, tag: int, multiple: bool, nacked: bool) -> None:
        with self._lock:
            tags = [seq for seq in self._moves if seq <= tag] if multiple else [tag]
            finished: list[tuple[_Move, str | None]] = []
            for seq in tags:
                move = self._moves.pop(seq, None)
                if move is not None:
                    returned = self._returned.pop(move.message_id, None)
                    finished.append((move, "nacked by RabbitMQ" if nacked else returned))
            if not self._moves:
                self._moves_done.notify_all()
        flush = False
        for move, refused in finished:
            flush = self._finish_move(move, refused) or flush
        if flush:
            self._flush()

    def _finish_move(self, move: _Move, refused: str | None) -> bool:
        delivery = move.delivery
        if refused is None:
            flush = self._settle(delivery)
            if move.done is not None:
                move.done.set_result(None)
            return flush
        error = PublishError(f"could not move {delivery.message_id}: {refused}",
                             message_id=delivery.message_id)  # fmt: skip
        if move.done is not None:
            move.done.set_exception(error)
        else:
            logger.error("%s; giving it back to %r", error, delivery.queue)
            self._give_back(delivery)
        return False

    def on_tick(self) -> None:
        if self._acked:
            self._flush_if_idle()

    def on_cancelled(self, consumer_tag: str) -> None:
        with self._lock:
            queue = self._consumer_tags.pop(consumer_tag, "?")
        logger.warning("RabbitMQ cancelled the consumer of %r (queue deleted?)", queue)
