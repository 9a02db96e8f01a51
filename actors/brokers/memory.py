"""The in-memory broker (``memory://``): for tests and single-process use.

It keeps the broker contract: priorities, delays, ack / dead-letter / requeue, redelivery of
what a closed consumer left unsettled, and ``Q.DLQ`` queues. Messages live in this process
only: nothing survives a restart.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from actors import names
from actors.broker import Broker, Consumer, DeadLetter, DeliveryHandler
from actors.dead_letters import describe_dead_letter, replay_headers
from actors.delivery import Delivery, Failure
from actors.encoding import Envelope

if TYPE_CHECKING:
    from actors.backends.base import Backend

logger = logging.getLogger("actors.brokers.memory")

_Item = tuple[bytes, dict[str, Any], bool]  # body, headers, redelivered


@dataclass
class _Queue:
    ready: list[tuple[int, int, _Item]] = field(default_factory=list)  # (-priority, seq, item)
    delayed: list[tuple[float, int, int, _Item]] = field(default_factory=list)  # (due, seq, ...)
    unacked: int = 0

    def promote_due(self, now: float) -> None:
        while self.delayed and self.delayed[0][0] <= now:
            _, seq, priority, item = heapq.heappop(self.delayed)
            heapq.heappush(self.ready, (-priority, seq, item))

    def next_due(self) -> float | None:
        return self.delayed[0][0] if self.delayed else None


class MemoryBroker(Broker):
    """A broker that keeps its queues in this process's memory (``memory://``)."""

    schemes = ("memory",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cond = threading.Condition()
        self._queues: dict[str, _Queue] = {}
        self._seq = itertools.count()

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue()
        return queue

    def declare_queue(self, queue: str) -> None:
        with self._cond:
            self._queue(queue)
            self._queue(names.dead_letter_queue(queue))

    def _publish(self, envelope: Envelope, delay: float | None) -> None:
        self._put(
            envelope.queue, envelope.priority, (envelope.body, envelope.headers, False), delay
        )

    def _put(self, queue_name: str, priority: int, item: _Item, delay: float | None = None) -> None:
        with self._cond:
            queue = self._queue(queue_name)
            if delay:
                heapq.heappush(
                    queue.delayed, (time.time() + delay, next(self._seq), priority, item)
                )
            else:
                heapq.heappush(queue.ready, (-priority, next(self._seq), item))
            self._cond.notify_all()

    def publish_raw(
        self, queue: str, body: bytes, headers: dict[str, Any] | None = None, *, priority: int = 0
    ) -> None:
        self._put(queue, priority, (body, dict(headers or {}), False))

    def consume(
        self, queues: Sequence[str], *, prefetch: int, on_delivery: DeliveryHandler
    ) -> Consumer:
        return MemoryConsumer(self, list(queues), prefetch, on_delivery)

    # -- inspection -----------------------------------------------------------------------------

    def queue_depth(self, queue: str) -> int:
        with self._cond:
            found = self._queues.get(queue)
            return 0 if found is None else len(found.ready) + len(found.delayed) + found.unacked

    def join(self, queue: str, *, timeout: float | None = None, interval: float = 0.05) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while (depth := self._depth_locked(queue)) > 0:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"queue {queue!r} still holds {depth} messages after {timeout}s"
                    )
                self._cond.wait(interval if remaining is None else min(remaining, interval))

    def _depth_locked(self, queue: str) -> int:
        found = self._queues.get(queue)
        return 0 if found is None else len(found.ready) + len(found.delayed) + found.unacked

    def purge(self, queue: str) -> int:
        with self._cond:
            found = self._queues.get(queue)
            if found is None:
                return 0
            count = len(found.ready) + len(found.delayed)
            found.ready.clear()
            found.delayed.clear()
            return count

    def dead_letters(self, queue: str, *, limit: int = 20) -> list[DeadLetter]:
        with self._cond:
            found = self._queues.get(names.dead_letter_queue(queue))
            items = [] if found is None else [entry[2] for entry in sorted(found.ready)[:limit]]
        return [describe_dead_letter(self, body, headers) for body, headers, _ in items]

    def replay_dead_letters(
        self, queue: str, *, limit: int | None = None, actor: str | None = None
    ) -> int:
        moved = 0
        with self._cond:
            dlq = self._queue(names.dead_letter_queue(queue))
            kept: list[tuple[int, int, _Item]] = []
            for entry in sorted(dlq.ready):
                body, headers, _ = entry[2]
                wanted = actor is None or headers.get(names.HEADER_ACTOR) == actor
                if wanted and (limit is None or moved < limit):
                    heapq.heappush(
                        self._queue(queue).ready,
                        (entry[0], next(self._seq), (body, replay_headers(headers), False)),
                    )
                    moved += 1
                else:
                    kept.append(entry)
            dlq.ready = kept
            heapq.heapify(dlq.ready)
            self._cond.notify_all()
        return moved

    def dead_letter_queues(self) -> dict[str, int]:
        with self._cond:
            return {
                name: len(queue.ready)
                for name, queue in self._queues.items()
                if names.is_dead_letter_queue(name)
            }

    def default_backend(self) -> Backend:
        """An in-memory backend: single-process brokers get single-process shared state."""
        from actors.backends.memory import MemoryBackend

        return MemoryBackend()


class MemoryDelivery(Delivery):
    """A delivery from the in-memory broker."""

    __slots__ = ("_consumer", "_priority", "_settled")

    def __init__(self, consumer: MemoryConsumer, queue: str, priority: int, item: _Item) -> None:
        super().__init__(queue, item[0], item[1], redelivered=item[2])
        self._consumer = consumer
        self._priority = priority
        self._settled = False

    def ack(self) -> None:
        self._consumer.settle(self, None)

    def dead_letter(self, failure: Failure) -> None:
        headers = {**self.headers, **failure.headers(), names.HEADER_ORIGINAL_QUEUE: self.queue}
        self._consumer.settle(self, (names.dead_letter_queue(self.queue), (self.body, headers)))

    def requeue(self) -> None:
        self._consumer.settle(self, (self.queue, (self.body, self.headers)))


class MemoryConsumer(Consumer):
    """Feeds deliveries from a `MemoryBroker` to a handler from its own thread."""

    def __init__(
        self, broker: MemoryBroker, queues: list[str], prefetch: int, handler: DeliveryHandler
    ) -> None:
        self._broker = broker
        self._queues = queues
        self._prefetch = max(1, prefetch)
        self._handler = handler
        self._outstanding: dict[int, MemoryDelivery] = {}
        self._running = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        for queue in self._queues:
            self._broker.declare_queue(queue)
        self._running = True
        self._thread = threading.Thread(
            target=self._run, name="actors-memory-consumer", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while True:
            delivery = self._take()
            if delivery is None:
                return
            try:
                self._handler(delivery)
            except Exception:  # the consumer thread must survive a failing handler
                logger.exception("delivery handler failed for %s", delivery.label)

    def _take(self) -> MemoryDelivery | None:
        cond = self._broker._cond
        with cond:
            while self._running:
                now = time.time()
                wake_at: float | None = None
                if len(self._outstanding) < self._prefetch:
                    for name in self._queues:
                        queue = self._broker._queue(name)
                        queue.promote_due(now)
                        if queue.ready:
                            neg_priority, _, item = heapq.heappop(queue.ready)
                            queue.unacked += 1
                            delivery = MemoryDelivery(self, name, -neg_priority, item)
                            self._outstanding[id(delivery)] = delivery
                            return delivery
                        due = queue.next_due()
                        if due is not None and (wake_at is None or due < wake_at):
                            wake_at = due
                cond.wait(None if wake_at is None else max(0.0, wake_at - now))
        return None

    def settle(
        self, delivery: MemoryDelivery, put: tuple[str, tuple[bytes, dict[str, Any]]] | None
    ) -> None:
        """Finish `delivery`; `put` names a queue to put its body into (DLQ or requeue)."""
        cond = self._broker._cond
        with cond:
            if delivery._settled:
                return
            delivery._settled = True
            self._outstanding.pop(id(delivery), None)
            self._broker._queue(delivery.queue).unacked -= 1
            if put is not None:
                queue_name, (body, headers) = put
                redelivered = queue_name == delivery.queue
                heapq.heappush(
                    self._broker._queue(queue_name).ready,
                    (-delivery._priority, next(self._broker._seq), (body, headers, redelivered)),
                )
            cond.notify_all()

    def set_prefetch(self, prefetch: int) -> None:
        with self._broker._cond:
            self._prefetch = max(1, prefetch)
            self._broker._cond.notify_all()

    def stop(self) -> None:
        with self._broker._cond:
            self._running = False
            self._broker._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def close(self) -> None:
        self.stop()
        for delivery in list(self._outstanding.values()):
            delivery.requeue()
