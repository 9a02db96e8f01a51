"""How many of a worker's threads run sync actors at once, adapted to the GIL.

A worker process has one GIL. Threads that wait on I/O (a Redis call, an HTTP request) let
others run meanwhile, which is what the threads are for; but once the process is busy for a
whole core, every extra running thread only adds GIL hand-offs (a context switch each) without
adding throughput: with 8 threads draining a backlog of short actors (one Redis call each),
the worker spent ~20 % more CPU per message than with 2 (docs/benchmarks.md).

`ThreadGate` lets all the threads run at first. Every `WINDOW` seconds it looks at the
process's CPU time over the window: busy for most of a core (the GIL is the bottleneck) means
fewer running threads, halfway down to `floor`; well under that while deliveries wait means
one more, up to all of them. Actors that wait on I/O therefore keep every thread; short
Python-bound actors run on fewer, with less switching. "Most of a core" starts at 0.75:
threads bound by one GIL lose time to its hand-offs, so such a process shows 0.8-0.85 of a
core rather than 1 (with 0.9 as the bound, about half the drains measured stayed at 4-5
threads, and ran ~30 % slower). A process that uses more than one
core (C code that releases the GIL) is left alone. A thread that has been on one message for
longer than a window does not count against the limit: long actors (a CPU-bound one, a hung
one) never leave the short ones without threads, as they would not in a fixed pool.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("actors.worker")

#: Seconds between two looks at the process's CPU time.
WINDOW = 0.25
#: CPU use (in cores) over a window that counts as bound by the GIL: most of one core.
GIL_BOUND = (0.75, 1.1)
#: CPU use under which waiting deliveries get one more running thread.
UNDERUSED = 0.6


class ThreadGate:
    """Admits at most `limit` threads at once; the limit moves between `floor` and `threads`.

    Args:
        threads: The worker's sync threads (the most that may run at once).
        backlog: Tells whether deliveries are waiting for a thread.
        floor: The fewest threads kept running while it adapts (default 2: one can wait on
            I/O while the other runs).
        adaptive: False keeps the limit at `threads`.
        clock: Monotonic seconds (injectable for tests).
        cpu: The process's CPU seconds (injectable for tests).
    """

    def __init__(
        self,
        threads: int,
        backlog: Callable[[], bool],
        *,
        floor: int = 2,
        adaptive: bool = True,
        clock: Callable[[], float] = time.monotonic,
        cpu: Callable[[], float] = time.process_time,
    ) -> None:
        self.threads = threads
        self.floor = max(1, min(floor, threads))
        self.adaptive = adaptive
        self.limit = threads
        self._active = 0
        self._long = 0  # admitted threads on one message for over a window, at the last look
        self._started: dict[int, float] = {}  # thread id -> when its message started
        # Taken twice per message: `with` on the plain lock costs less than on the Condition.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._clock = clock
        self._cpu = cpu
        self._backlog = backlog
        self._window_start = clock()
        self._cpu_start = cpu()

    @property
    def active(self) -> int:
        """Threads admitted and not yet left."""
        return self._active

    def enter(self) -> None:
        """Wait until this thread may take messages (it then keeps its place between them)."""
        with self._lock:
            self._wait_for_place()
            self._active += 1

    def started(self) -> None:
        """This thread took a message (after `enter`) and runs it now."""
        if self.adaptive:
            self._started[threading.get_ident()] = self._clock()

    def finished(self) -> None:
        """This thread finished its message; returns once it may take the next one.

        A thread keeps its place from one message to the next (handing it to another
        thread would cost a context switch per message) unless more threads run than the
        limit allows: then it waits, as in `enter`. A fixed gate has nothing to do here.
        """
        if not self.adaptive:
            return
        with self._lock:
            self._started.pop(threading.get_ident(), None)
            self._look()
            if self._active - self._long > self.limit:
                self._active -= 1
                self._wait_for_place()
                self._active += 1

    def leave(self) -> None:
        """This thread stops taking messages (the worker is stopping)."""
        with self._lock:
            self._started.pop(threading.get_ident(), None)
            self._active -= 1
            self._cond.notify()

    def _wait_for_place(self) -> None:
        """Wait until fewer threads run than the limit allows (under the lock)."""
        while self._active - self._long >= self.limit:
            # A waiting thread looks again after a window without any thread finishing:
            # the running actors may all be waiting (on I/O, or on work queued behind
            # them), and only another thread can then see that the process sits idle.
            if not self._cond.wait(WINDOW):
                self._look()

    def open(self) -> None:
        """Admit every thread from now on (the worker is stopping: all must see the end)."""
        with self._lock:
            self.adaptive = False
            self.limit = self.threads
            self._cond.notify_all()

    def _look(self) -> None:
        """Count the long messages and adapt the limit, once a window (under the lock)."""
        now = self._clock()
        if not self.adaptive or now - self._window_start < WINDOW:
            return
        long_before = self._long
        self._long = sum(1 for start in tuple(self._started.values()) if now - start > WINDOW)
        self._adapt(now)
        if self._long > long_before:
            self._cond.notify(self._long - long_before)

    def _adapt(self, now: float) -> None:
        cpu = self._cpu()
        cores = (cpu - self._cpu_start) / (now - self._window_start)
        self._window_start, self._cpu_start = now, cpu
        before = self.limit
        low, high = GIL_BOUND
        if low <= cores <= high and self.limit > self.floor:
            # Halfway to the floor: a backlog of short actors settles within a second; a
            # limit set too low comes back up one window at a time.
            self.limit -= max(1, (self.limit - self.floor) // 2)
        elif cores < UNDERUSED and self.limit < self.threads and self._backlog():
            self.limit += 1
            self._cond.notify()
        if self.limit != before:
            logger.debug("thread gate: %d running threads (%.2f cores used)", self.limit, cores)
