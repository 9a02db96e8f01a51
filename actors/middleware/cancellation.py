"""Cancellation: messages marked with `actors.cancel` are skipped, or stopped while they run."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from actors.cancel import DEFAULT_CANCEL_TTL
from actors.delivery import Failure
from actors.errors import Cancelled, SkipMessage
from actors.middleware._backend import optional_backend
from actors.middleware._interrupt import interrupt_thread
from actors.middleware.base import Middleware
from actors.names import CANCEL_LOG_KEY

if TYPE_CHECKING:
    from actors.broker import Broker
    from actors.delivery import Delivery
    from actors.worker import Worker

logger = logging.getLogger("actors.middleware.cancellation")

DEFAULT_POLL_INTERVAL = 0.5


@dataclass(slots=True, eq=False)
class _Running:
    """A message running in this process, as the poller sees it."""

    message_id: str
    thread_id: int | None  # a sync actor's thread
    task: asyncio.Task[Any] | None  # an async actor's task
    fired: bool = False


def _cancelled_failure(detail: str) -> Failure:
    return Failure("cancelled", "Cancelled", detail)


class Cancellation(Middleware):
    """Skips cancelled messages when taken, and stops cancelled messages that are running.

    A thread in each worker process follows the backend's log of cancelled message ids (one
    read every `interval` seconds, whatever the message rate), so that the check before each
    message is a local lookup, not a round trip. A message cancelled before the last read is
    dead-lettered with reason ``cancelled`` without running. A running message found in the
    log is stopped: an async actor's task is cancelled, a sync actor gets `actors.Cancelled`
    raised in its thread (like time limits: pure-Python code stops at once, C code and blocking
    calls when they return). So a message cancelled less than `interval` before a worker takes
    it starts, and is stopped within `interval`. A cancelled message is not retried.

    Without a configured backend, cancellation is off. No actor options.

    Args:
        interval: Seconds between two reads of the cancel log (default 0.5).
        ttl: How long a cancel is remembered, in seconds (default one day, as `cancel`).
    """

    actor_options: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self, *, interval: float = DEFAULT_POLL_INTERVAL, ttl: float = DEFAULT_CANCEL_TTL
    ) -> None:
        self._interval = interval
        self._ttl = ttl
        self._cancelled: dict[str, float] = {}  # message id -> when it was cancelled
        self._cursor = 0.0
        self._lock = threading.Condition()
        self._running: dict[Delivery, _Running] = {}
        self._workers: list[Worker] = []
        self._thread: threading.Thread | None = None
        self._off = False  # a worker booted without a backend: no cancel can reach it

    @property
    def handles_messages(self) -> bool:
        """False in a worker without a backend (no poller either)."""
        return not self._off

    # -- poller lifecycle -----------------------------------------------------------------------

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        """Read the cancel log once, then start the thread that follows it."""
        if optional_backend("cancellation") is None:
            self._off = True
            return
        self._off = False
        self._sync()
        with self._lock:
            self._workers.append(worker)
            if self._thread is None:
                self._thread = threading.Thread(target=self._poll, name="actors-cancel",
                                                daemon=True)  # fmt: skip
                self._thread.start()

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        """Stop the poller once the last worker using it stopped."""
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)
            thread = self._thread if not self._workers else None
            if thread is not None:
                self._thread = None
                self._lock.notify_all()
        if thread is not None:
            thread.join(timeout=5)

    def _poll(self) -> None:
        while True:
            with self._lock:
                self._lock.wait(self._interval)
                if self._thread is not threading.current_thread():
                    return
            self._sync()
            with self._lock:
                hits = [(d, e) for d, e in self._running.items() if e.message_id in self._cancelled]
            for delivery, entry in hits:
                self._stop(delivery, entry)

    def _sync(self) -> None:
        """Add the cancels recorded since the last read to the local set."""
        backend = optional_backend("cancellation")
        if backend is None:
            return
        try:
            recent = backend.events_since(CANCEL_LOG_KEY, self._cursor)
        except Exception:
            logger.exception("could not read the cancel log")
            return
        if not recent:
            return
        cancelled = dict(self._cancelled)
        cancelled.update(recent)
        self._cursor = max(at for _, at in recent)
        horizon = self._cursor - self._ttl
        self._cancelled = {mid: at for mid, at in cancelled.items() if at >= horizon}

    def _stop(self, delivery: Delivery, entry: _Running) -> None:
        with self._lock:
            if self._running.get(delivery) is not entry or entry.fired:
                return
            if entry.task is not None:
                entry.task.get_loop().call_soon_threadsafe(self._cancel_task, delivery, entry)
                return
            entry.fired = True
            assert entry.thread_id is not None
            interrupt_thread(entry.thread_id, Cancelled)
        logger.info("cancelled %s while it ran", delivery.message_id)

    def _cancel_task(self, delivery: Delivery, entry: _Running) -> None:
        # on the event loop: the after-hook runs there too, so the task is surely still in
        # its actor if the entry is still registered
        with self._lock:
            if self._running.get(delivery) is not entry or entry.task is None:
                return
            entry.fired = True
            entry.task.cancel("cancelled by actors.cancel()")

    # -- hooks ----------------------------------------------------------------------------------

    def before_process_message(self, broker: Broker, delivery: Delivery) -> None:
        """Skip a cancelled message; watch the others while they run."""
        if delivery.actor is None:
            return
        message_id = delivery.message_id
        if message_id in self._cancelled:
            delivery.reject(_cancelled_failure("cancelled before it ran"))
            raise SkipMessage
        if delivery.actor.is_async:
            entry = _Running(message_id, None, asyncio.current_task())
        else:
            entry = _Running(message_id, threading.get_ident(), None)
        with self._lock:
            self._running[delivery] = entry

    def after_process_message(
        self,
        broker: Broker,
        delivery: Delivery,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """Dead-letter a message stopped by a cancel (instead of retrying it)."""
        with self._lock:
            entry = self._running.pop(delivery, None)
        if entry is None or not entry.fired:
            return
        if isinstance(exception, Cancelled | asyncio.CancelledError):
            delivery.reject(_cancelled_failure("cancelled while it ran"))
        elif entry.thread_id is not None:
            interrupt_thread(entry.thread_id, None)  # it returned just as the interrupt was sent

    def after_skip_message(self, broker: Broker, delivery: Delivery) -> None:
        """Forget a message that a later middleware skipped."""
        with self._lock:
            self._running.pop(delivery, None)
