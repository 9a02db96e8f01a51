"""Time limits: actors that run too long are interrupted, and stuck ones replaced."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from actors.errors import TimeLimitExceeded
from actors.middleware._interrupt import interrupt_thread
from actors.middleware._options import seconds
from actors.middleware.base import Middleware

if TYPE_CHECKING:
    from actors.broker import Broker
    from actors.delivery import Delivery
    from actors.worker import Worker

logger = logging.getLogger("actors.middleware.time_limit")

DEFAULT_TIME_LIMIT = 600.0
DEFAULT_GRACE = 10.0


@dataclass(slots=True, eq=False)
class Watch:
    """One running message under a time limit, as the watchdog sees it (monotonic times)."""

    delivery: Delivery
    thread_id: int | None  # the thread of a sync actor; None for an async actor
    soft_at: float | None  # when to raise TimeLimitExceeded into the thread (sync only)
    hard_at: float  # when to give up on the process
    fired: bool = False


class Watchdog:
    """A thread that interrupts sync actors past their limit and reports stuck ones.

    It sleeps until the earliest deadline among the running messages (a handful: one per
    worker thread or async slot), so it costs nothing while actors finish in time.
    """

    def __init__(self, on_hard: Callable[[Watch], None], clock: Callable[[], float]) -> None:
        self._on_hard = on_hard
        self._clock = clock
        self._lock = threading.Lock()  # taken twice per message: the plain lock, not the Condition
        self._cond = threading.Condition(self._lock)
        self._watches: set[Watch] = set()
        self._wake_at = float("inf")
        self._thread: threading.Thread | None = None
        self._running = False

    def start(self) -> None:
        """Start the watchdog thread if it is not running."""
        with self._cond:
            if self._running:
                return
            self._running = True
        self._thread = threading.Thread(target=self._run, name="actors-time-limit", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the watchdog thread."""
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def add(self, watch: Watch) -> None:
        """Watch a message that starts running now (starting the thread if it is not running)."""
        if not self._running:  # asked for every message: no lock once the thread runs
            self.start()
        with self._lock:
            self._watches.add(watch)
            if _next_deadline(watch) < self._wake_at:
                self._cond.notify()

    def remove(self, watch: Watch) -> bool:
        """Stop watching; return True if the soft limit already fired for it."""
        with self._lock:
            self._watches.discard(watch)
            return watch.fired

    def _run(self) -> None:
        with self._cond:
            while self._running:
                now = self._clock()
                for watch in list(self._watches):
                    self._check(watch, now)
                self._wake_at = min((_next_deadline(w) for w in self._watches), default=now + 3600)
                self._cond.wait(max(0.0, self._wake_at - now))

    def _check(self, watch: Watch, now: float) -> None:
        if watch.soft_at is not None and not watch.fired and now >= watch.soft_at:
            watch.fired = True
            assert watch.thread_id is not None
            interrupt_thread(watch.thread_id, TimeLimitExceeded)
        elif now >= watch.hard_at:
            self._watches.discard(watch)
            self._on_hard(watch)


def _next_deadline(watch: Watch) -> float:
    if watch.soft_at is not None and not watch.fired:
        return watch.soft_at
    return watch.hard_at


class TimeLimit(Middleware):
    """Interrupts an actor that runs longer than its ``time_limit``.

    - Sync actors get `actors.TimeLimitExceeded` raised in their thread. It derives from
      `BaseException`, so ``except Exception`` does not swallow it, while ``try/finally`` and
      ``except TimeLimitExceeded`` can clean up.
    - Async actors have their task cancelled (``asyncio.CancelledError`` whose message names
      the limit).

    The failure then goes through retries like any other error. An actor that does not stop
    within ``grace`` more seconds (stuck in C code, blocking I/O, or a blocked event loop) gets
    its worker process replaced: the worker logs it and, when run by the ``actors worker``
    supervisor, exits with code 3 so that the supervisor starts a new process and the broker
    redelivers its unsettled messages (which then retry or dead-letter, never vanish).

    Actor options:
        time_limit: Seconds or a timedelta (default 600 s); None disables the limit.

    Args:
        time_limit: The default of the ``time_limit`` option, in seconds (None: no limit).
        grace: Seconds after ``time_limit`` before the process is replaced (default 10).
        clock: Monotonic seconds (default `time.monotonic`), for tests.
    """

    actor_options: ClassVar[frozenset[str]] = frozenset({"time_limit"})

    def __init__(
        self,
        *,
        time_limit: float | None = DEFAULT_TIME_LIMIT,
        grace: float = DEFAULT_GRACE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._default = time_limit
        self._grace = grace
        self._clock = clock
        self._watchdog = Watchdog(self._on_hard_limit, clock)
        self._running: dict[Delivery, tuple[Watch, asyncio.TimerHandle | None]] = {}
        self._workers: list[Worker] = []

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        """Start the watchdog."""
        self._workers.append(worker)
        self._watchdog.start()

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        """Stop the watchdog once the last worker using it stopped."""
        if worker in self._workers:
            self._workers.remove(worker)
        if not self._workers:
            self._watchdog.stop()

    def before_process_message(self, broker: Broker, delivery: Delivery) -> None:
        """Arm the limit: a watchdog entry, and for async actors a cancel timer."""
        limit = seconds(delivery.option("time_limit", self._default), "time_limit")
        actor = delivery.actor
        if limit is None or actor is None:
            return
        now = self._clock()
        timer: asyncio.TimerHandle | None = None
        if actor.is_async:
            task = asyncio.current_task()
            if task is None:
                return
            reason = f"time limit of {limit:g}s exceeded"
            timer = asyncio.get_running_loop().call_later(limit, task.cancel, reason)
            watch = Watch(delivery, None, None, now + limit + self._grace)
        else:
            watch = Watch(delivery, threading.get_ident(), now + limit, now + limit + self._grace)
        self._running[delivery] = (watch, timer)
        self._watchdog.add(watch)

    def after_process_message(
        self,
        broker: Broker,
        delivery: Delivery,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """Disarm the limit."""
        self._disarm(delivery, exception)

    def after_skip_message(self, broker: Broker, delivery: Delivery) -> None:
        """Disarm the limit of a message that a later middleware skipped."""
        self._disarm(delivery, None)

    def _disarm(self, delivery: Delivery, exception: BaseException | None) -> None:
        entry = self._running.pop(delivery, None)
        if entry is None:
            return
        watch, timer = entry
        if timer is not None:
            timer.cancel()
        fired = self._watchdog.remove(watch)
        if fired and not isinstance(exception, TimeLimitExceeded) and watch.thread_id is not None:
            # the actor returned just as the limit fired: drop the still-pending interrupt
            interrupt_thread(watch.thread_id, None)

    def _on_hard_limit(self, watch: Watch) -> None:
        reason = f"{watch.delivery.label} is still running {self._grace:g}s past its time limit"
        for worker in list(self._workers):
            worker.hard_exit(reason)
        if not self._workers:
            logger.critical("%s (no worker to replace)", reason)
