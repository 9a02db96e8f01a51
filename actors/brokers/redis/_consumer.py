"""RedisConsumer: reads streams with a consumer group and settles deliveries in batches.

Two threads per consumer, each with its own connection:

- the reader blocks in XREADGROUP (no polling), takes due delayed messages and claims the
  entries of dead consumers, and hands deliveries to the worker; while messages flow, each of
  its reads also carries the acks of the messages finished since the last one (one round trip
  for both);
- the settler sends the acks that come while the reader is parked in a blocking read (XACK +
  XDEL in one MULTI per batch), moves dead letters and requeued messages, and refreshes the
  idle time of in-flight entries (the heartbeat).

Both retry with backoff while Redis is unreachable; unsettled entries stay in the group's
pending list meanwhile, so nothing is lost (see docs/redis.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import msgpack
import redis

from actors import names
from actors.broker import Consumer, DeliveryHandler
from actors.brokers.redis._broker import entry_fields, split_fields
from actors.brokers.redis._connection import CONNECTION_ERRORS, Backoff, open_client
from actors.delivery import Delivery, Failure
from actors.errors import BrokerConnectionError

if TYPE_CHECKING:
    from actors.brokers.redis._broker import RedisBroker

logger = logging.getLogger("actors.brokers.redis")

#: The longest a reader blocks before it looks again for due delayed messages (seconds).
IDLE_WAKEUP = 1.0
#: The longest a finished message waits for the reader's next read to carry its ack (seconds).
ACK_LINGER = 0.01
_PROMOTE_LIMIT = 100
_GROUP = names.REDIS_GROUP
RETRIED_ERRORS: tuple[type[Exception], ...] = (*CONNECTION_ERRORS, BrokerConnectionError)


class RedisDelivery(Delivery):
    """A delivery of one stream entry; settled through its consumer's settler thread."""

    __slots__ = ("_consumer", "_settled", "entry_id", "priority", "stream")

    def __init__(
        self,
        consumer: RedisConsumer,
        stream: tuple[str, str, int],
        entry_id: bytes,
        fields: Iterable[tuple[bytes, bytes]],
        count: int,
    ) -> None:
        body, headers = split_fields(fields)
        deliveries = _int(headers.get(names.HEADER_DELIVERIES)) + count - 1
        if deliveries > 0:
            headers[names.HEADER_DELIVERIES] = deliveries
        self.stream, queue_name, self.priority = stream
        super().__init__(queue_name, body, headers, redelivered=deliveries > 0)
        self.entry_id = entry_id
        self._consumer = consumer
        self._settled = False

    def ack(self) -> None:
        self._consumer.settle(self, None)

    def dead_letter(self, failure: Failure) -> None:
        fields = entry_fields(
            {**self.headers, **failure.headers(), names.HEADER_ORIGINAL_QUEUE: self.queue,
             names.REDIS_FIELD_PRIORITY: self.priority},
            self.body,
        )  # fmt: skip
        self._consumer.settle(self, (self._consumer.dead_letter_key(self.queue), fields), wait=True)

    def requeue(self) -> None:
        headers = {**self.headers, names.HEADER_DELIVERIES: self.deliveries}
        self._consumer.settle(self, (self.stream, entry_fields(headers, self.body)))


_Move = tuple[str, list[Any]]  # target stream, fields
_Op = tuple[RedisDelivery, _Move | None, threading.Event | None]


class RedisConsumer(Consumer):
    """Consumes `queues` of a `RedisBroker` with at most `prefetch` deliveries outstanding."""

    def __init__(
        self, broker: RedisBroker, queues: Sequence[str], prefetch: int, handler: DeliveryHandler
    ) -> None:
        self._broker = broker
        self._queues = list(queues)
        self._prefetch = max(1, prefetch)
        self._handler = handler
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        timeout = broker.connection_timeout + IDLE_WAKEUP
        self._reader = open_client(broker.url, name=f"actors-reader:{self.name}",
                                   socket_timeout=timeout)  # fmt: skip
        self._writer = open_client(broker.url, name=f"actors-settler:{self.name}",
                                   socket_timeout=timeout)  # fmt: skip
        self._scripts = broker.scripts
        # Read order: priority 9 of every queue, then 8 ..., each as (key, queue, priority).
        self._streams = [
            (names.redis_stream_key(broker.namespace, q, p), q, p)
            for p in reversed(range(names.PRIORITY_LEVELS))
            for q in self._queues
        ]
        self._by_key = {stream[0]: stream for stream in self._streams}
        self._index = {key: i for i, (key, _, _) in enumerate(self._streams, 1)}
        stream_keys = [key for key, _, _ in self._streams]
        delay_keys = [broker.delay_keys(q) for q in self._queues]
        self._take_keys = [k[0] for k in delay_keys] + [k[1] for k in delay_keys] + stream_keys
        self._claim_keys = stream_keys + [broker.dead_letter_key(q) for q in self._queues]
        self._claim_interval = max(0.1, broker.claim_after / 2)
        self._heartbeat_interval = max(0.05, broker.claim_after / 3)
        self._cond = threading.Condition(threading.Lock())
        # Deliveries not yet settled in Redis (heartbeat, close), and how many of them the
        # worker still has to finish (the prefetch counts those only).
        self._outstanding: set[RedisDelivery] = set()
        self._unfinished = 0
        # Reads are refilled in batches of at least half the prefetch: fewer, bigger round trips.
        self._refill = max(1, self._prefetch // 2)
        # Acks ride on the reader's next read (one round trip for both) unless the reader is
        # parked in a blocking read: then the settler sends them.
        self._acks: list[RedisDelivery] = []
        self._parked = False
        self._waiting = False
        self._ops: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._running = False
        self._stopping = threading.Event()
        self._closed = threading.Event()
        self._reader_id: int | None = None
        self._threads: list[threading.Thread] = []

    def dead_letter_key(self, queue_name: str) -> str:
        """The dead-letter stream of `queue_name`."""
        return self._broker.dead_letter_key(queue_name)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        for target, role in ((self._read_loop, "reader"), (self._settle_loop, "settler")):
            thread = threading.Thread(target=target, name=f"actors-redis-{role}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def set_prefetch(self, prefetch: int) -> None:
        with self._cond:
            self._prefetch = max(1, prefetch)
            self._refill = max(1, self._prefetch // 2)
            self._cond.notify_all()

    def stop(self) -> None:
        if not self._running:
            return
        self._stopping.set()
        with self._cond:
            self._running = False
            acks, self._acks = self._acks, []
            self._cond.notify_all()
        for delivery in acks:
            self._ops.put((delivery, None, None))
        self._unblock_reader()
        reader = self._threads[0] if self._threads else None
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=self._broker.connection_timeout + IDLE_WAKEUP)

    def close(self) -> None:
        self.stop()
        with self._cond:
            unsettled = [d for d in self._outstanding if not d._settled]
        for delivery in unsettled:
            delivery.requeue()
        self._ops.put(None)
        if len(self._threads) > 1:
            self._threads[1].join(timeout=self._broker.connection_timeout + 1)
        self._closed.set()
        self._forget_self()
        self._reader.close()
        self._writer.close()

    def _unblock_reader(self) -> None:
        """Wake the reader out of its blocking XREADGROUP so that `stop` returns at once."""
        if self._reader_id is None:
            return
        with contextlib.suppress(redis.RedisError):  # else it wakes by itself within IDLE_WAKEUP
            self._writer.client_unblock(self._reader_id)

    def _forget_self(self) -> None:
        """Remove this consumer from the groups if it holds nothing (keeps XINFO tidy)."""
        try:
            pipe = self._writer.pipeline(transaction=False)
            for key, _, _ in self._streams:
                pipe.xpending_range(key, _GROUP, "-", "+", 1, consumername=self.name)
            pending = pipe.execute()
            pipe = self._writer.pipeline(transaction=False)
            for (key, _, _), held in zip(self._streams, pending, strict=True):
                if not held:
                    pipe.xgroup_delconsumer(key, _GROUP, self.name)
            pipe.execute()
        except redis.RedisError as exc:
            logger.debug("could not remove consumer %s from its groups: %s", self.name, exc)

    # -- settling (any thread) ------------------------------------------------------------------

    def settle(self, delivery: RedisDelivery, move: _Move | None, *, wait: bool = False) -> None:
        """Settle `delivery` once: ack it, or move it to `move`'s stream and ack it."""
        with self._cond:
            if delivery._settled:
                return
            delivery._settled = True
            self._unfinished -= 1
            # Wake a waiting reader only when this changes what it waits for: the first free
            # slot, the refill threshold, the first ack to carry.
            free = self._prefetch - self._unfinished
            wake = self._waiting and (free == 1 or free == self._refill)
            if move is None and self._running and not self._parked:
                self._acks.append(delivery)
                if wake or (self._waiting and len(self._acks) == 1):
                    self._cond.notify()
                return
            if wake:
                self._cond.notify()
        done = threading.Event() if wait else None
        self._ops.put((delivery, move, done))
        if done is not None and not done.wait(self._broker.connection_timeout):
            logger.warning(
                "message %s is not settled yet (Redis unreachable); it stays in flight and "
                "is settled once Redis answers, or redelivered if this worker dies",
                delivery.message_id,
            )

    # -- reader thread --------------------------------------------------------------------------

    def _read_loop(self) -> None:
        backoff = Backoff()
        declared = False
        next_claim = 0.0
        while self._running:
            try:
                if not declared:
                    self._declare()
                    declared = True
                if self._reader_id is None:
                    self._reader_id = int(self._reader.client_id())
                next_claim = self._read_once(next_claim)
                backoff.reset()
            except RETRIED_ERRORS as exc:
                self._reader_id = None
                self._pause(backoff, f"lost Redis ({exc})", self._stopping)
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    # The streams vanished (Redis restarted without persistence, keys deleted).
                    self._broker.forget_declared()
                    declared = False
                else:
                    logger.exception("Redis refused a read")
                self._pause(backoff, f"Redis refused a read ({exc})", self._stopping)
            except Exception:
                logger.exception("unexpected error in the Redis reader")
                self._pause(backoff, "unexpected error", self._stopping)

    def _pause(self, backoff: Backoff, why: str, interrupt: threading.Event) -> None:
        pause = backoff.pause()
        logger.warning("Redis consumer %s: %s; retrying in %.1fs", self.name, why, pause)
        interrupt.wait(pause)

    def _declare(self) -> None:
        for queue_name in self._queues:
            self._broker.declare_queue(queue_name)

    def _read_once(self, next_claim: float) -> float:
        capacity, acks = self._wait_for_work()
        if not self._running:
            self._give_back(acks)
            return next_claim
        now = time.monotonic()
        if capacity > 0 and now >= next_claim:
            next_claim = now + self._claim_interval
            try:
                claimed = self._claim(capacity)
            except BaseException:
                self._give_back(acks)
                raise
            self._hand_over(claimed)
            capacity = self._capacity()
        if capacity <= 0 and not acks:
            return next_claim
        due_in, taken = self._take(max(0, capacity), acks)
        if taken:
            self._hand_over(taken)
            return next_claim
        if capacity <= 0:
            return next_claim
        with self._cond:
            if self._acks or not self._running:
                return next_claim  # acks came in meanwhile: send them before blocking
            self._parked = True
        try:
            wait = min(IDLE_WAKEUP, next_claim - time.monotonic())
            if due_in >= 0:
                wait = min(wait, due_in / 1000)
            self._hand_over(self._block(wait))
        finally:
            with self._cond:
                self._parked = False
        return next_claim

    def _capacity(self) -> int:
        return self._prefetch - self._unfinished

    def _wait_for_work(self) -> tuple[int, list[RedisDelivery]]:
        """Wait until half the prefetch is free, or acks waited `ACK_LINGER`; take the acks."""
        with self._cond:
            deadline: float | None = None
            while self._running:
                capacity = self._capacity()
                if capacity >= self._refill:
                    break
                timeout = self._claim_interval
                if self._acks or capacity > 0:
                    now = time.monotonic()
                    if deadline is None:
                        deadline = now + ACK_LINGER
                    elif now >= deadline:
                        break
                    timeout = deadline - now
                self._waiting = True
                self._cond.wait(timeout)
                self._waiting = False
            acks, self._acks = self._acks, []
            return self._capacity(), acks

    def _give_back(self, acks: list[RedisDelivery]) -> None:
        """Queue acks that were not sent again: for the next read, or the settler if stopped."""
        if not acks:
            return
        with self._cond:
            if self._running:
                self._acks[:0] = acks
                return
        for delivery in acks:
            self._ops.put((delivery, None, None))

    def _take(self, want: int, acks: list[RedisDelivery]) -> tuple[int, list[RedisDelivery]]:
        """Ack `acks`, then read up to `want` entries, in one round trip."""
        args: list[Any] = [_GROUP, self.name, want, len(self._queues), _PROMOTE_LIMIT,
                           names.REDIS_FIELD_PRIORITY]  # fmt: skip
        index = self._index
        for delivery in acks:
            args += (index[delivery.stream], delivery.entry_id)
        try:
            blob = self._scripts.take(keys=self._take_keys, args=args, client=self._reader)
        except BaseException:
            self._give_back(acks)  # XACK is idempotent: sending them again is harmless
            raise
        if acks:
            with self._cond:
                self._outstanding.difference_update(acks)
        due_in, entries = msgpack.unpackb(blob, raw=True)
        streams = self._streams
        taken = [
            RedisDelivery(self, streams[index - 1], entry_id, _pairs(fields), 1)
            for index, entry_id, fields in entries
        ]
        return int(due_in), taken

    def _claim(self, want: int) -> list[RedisDelivery]:
        broker = self._broker
        poison = Failure("poison", "", f"delivered more than {broker.max_deliveries} times "
                         "without being settled (its workers died or lost Redis)")  # fmt: skip
        forget_after = round(max(broker.claim_after * 10, 300) * 1000)
        args: list[Any] = [
            _GROUP, self.name, round(broker.claim_after * 1000), want, broker.max_deliveries,
            len(self._queues), names.REDIS_FIELD_PRIORITY, names.HEADER_ORIGINAL_QUEUE,
            forget_after, *self._queues,
        ]  # fmt: skip
        for key, value in poison.headers().items():
            args += (key, value)
        entries = self._scripts.claim(keys=self._claim_keys, args=args, client=self._reader)
        return [
            RedisDelivery(self, self._streams[index - 1], entry_id, _pairs(fields), count)
            for index, entry_id, fields, count in entries
        ]

    def _block(self, wait: float) -> list[RedisDelivery]:
        if not self._running or wait <= 0:
            return []
        streams: dict[Any, Any] = dict.fromkeys(self._by_key, ">")
        block = max(1, round(wait * 1000))
        replies: Any = self._reader.xreadgroup(_GROUP, self.name, streams, count=1, block=block)
        return [
            RedisDelivery(self, self._by_key[key.decode()], entry_id, _pairs(fields), 1)
            for key, entries in replies or ()
            for entry_id, fields in entries
        ]

    def _hand_over(self, deliveries: list[RedisDelivery]) -> None:
        if not deliveries:
            return
        deliveries.sort(key=_by_priority)
        with self._cond:
            self._outstanding.update(deliveries)
            self._unfinished += len(deliveries)
        for delivery in deliveries:
            if not self._running:
                delivery.requeue()  # read as the consumer stopped: give it back at once
                continue
            try:
                self._handler(delivery)
            except Exception:
                logger.exception("delivery handler failed for %s", delivery.message_id)

    # -- settler thread -------------------------------------------------------------------------

    def _settle_loop(self) -> None:
        next_heartbeat = time.monotonic() + self._heartbeat_interval
        stopping = False
        while not stopping:
            batch, stopping = self._next_batch(next_heartbeat)
            if batch:
                self._flush(batch, give_up=stopping)
            if time.monotonic() >= next_heartbeat and not stopping:
                next_heartbeat = time.monotonic() + self._heartbeat_interval
                self._heartbeat()

    def _next_batch(self, until: float) -> tuple[list[_Op], bool]:
        ops = self._ops
        try:
            first = ops.get(timeout=max(0.0, until - time.monotonic()))
        except queue.Empty:
            return [], False
        batch: list[_Op] = []
        item: _Op | None = first
        while True:
            if item is None:
                return batch, True
            batch.append(item)
            try:
                item = ops.get_nowait()
            except queue.Empty:
                return batch, False

    def _flush(self, batch: list[_Op], *, give_up: bool) -> None:
        """Apply `batch` in one MULTI, retrying while Redis is away (at close: for a while)."""
        backoff = Backoff()
        deadline = time.monotonic() + self._broker.connection_timeout
        while True:
            try:
                self._apply(batch)
                break
            except CONNECTION_ERRORS as exc:
                if give_up and time.monotonic() >= deadline:
                    logger.warning("giving up settling %d messages at close: %s; they will be "
                                   "redelivered after claim_after", len(batch), exc)  # fmt: skip
                    break
                self._pause(backoff, f"lost Redis while settling ({exc})", self._closed)
            except redis.RedisError:
                logger.exception("Redis refused to settle %d messages", len(batch))
                break
        with self._cond:
            self._outstanding.difference_update(op[0] for op in batch)
        for _, _, done in batch:
            if done is not None:
                done.set()

    def _apply(self, batch: list[_Op]) -> None:
        acks: dict[str, list[bytes]] = {}
        pipe = self._writer.pipeline(transaction=True)
        for delivery, move, _ in batch:
            if move is None:
                acks.setdefault(delivery.stream, []).append(delivery.entry_id)
            else:
                args = [_GROUP, self.name, delivery.entry_id, *move[1]]
                self._scripts.move(keys=[delivery.stream, move[0]], args=args, client=pipe)
        for stream, ids in acks.items():
            pipe.xack(stream, _GROUP, *ids)
            pipe.xdel(stream, *ids)
        pipe.execute()

    def _heartbeat(self) -> None:
        """Refresh the idle time of every in-flight entry this consumer still owns."""
        by_stream: dict[str, list[bytes]] = {}
        with self._cond:
            for delivery in self._outstanding:
                by_stream.setdefault(delivery.stream, []).append(delivery.entry_id)
        if not by_stream:
            return
        try:
            pipe = self._writer.pipeline(transaction=False)
            for stream, ids in by_stream.items():
                self._scripts.heartbeat(keys=[stream], args=[_GROUP, self.name, *ids], client=pipe)
            lost = [entry for ids in pipe.execute() for entry in ids]
        except redis.RedisError as exc:
            logger.warning("heartbeat of %s failed: %s", self.name, exc)
            return
        if lost:
            logger.warning(
                "%d in-flight messages were taken over by another worker (no heartbeat for "
                "claim_after=%gs): they may run twice (ids %s)",
                len(lost), self._broker.claim_after, b", ".join(lost).decode(),
            )  # fmt: skip


def _by_priority(delivery: RedisDelivery) -> int:
    return -delivery.priority


def _pairs(fields: Any) -> Iterable[tuple[bytes, bytes]]:
    """Stream fields as (name, value) pairs, from a flat list (Lua) or a dict (redis-py)."""
    if isinstance(fields, dict):
        return fields.items()
    it = iter(fields)
    return zip(it, it, strict=False)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
