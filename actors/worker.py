"""The worker: takes messages from a broker and runs their actors.

Sync actors run on a pool of threads; async actors run on one event loop per process, in a
thread of its own, bounded by their own concurrency setting. A thread with nothing to do reads
from the broker itself where the consumer allows it (RabbitMQ) and runs the first message it
took, so a message reaches its actor without waking another thread; the others it took go to
the pool. The consumer's own thread reads whenever no worker thread has for a moment, so
neither busy actor threads nor a blocked event loop can starve heartbeats. A message is
acknowledged only after its actor finished and the outcome (ack, retry, dead-letter) is
safely with the broker: delivery is at-least-once.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

from actors import prefetch as sizing
from actors import registry
from actors.broker import Broker, Consumer
from actors.delivery import Delivery, Failure, Outcome
from actors.errors import (
    ActorNotFound,
    Cancelled,
    Retry,
    SkipMessage,
    TimeLimitExceeded,
    WorkerShutdown,
)
from actors.thread_gate import ThreadGate

logger = logging.getLogger("actors.worker")

_current_delivery: contextvars.ContextVar[Delivery | None] = contextvars.ContextVar(
    "actors_current_delivery", default=None
)

DEFAULT_THREADS = 8
DEFAULT_ASYNC_CONCURRENCY = 64
DEFAULT_SHUTDOWN_TIMEOUT = 30.0

# Put in the work queue to wake an idle thread so that it reads from the broker.
_READ = object()
# A thread that read the only delivery its worker has, for a sync actor that usually takes
# less than this (seconds, hooks and settling included), runs it without first waking another
# thread to read on: the wake-up costs more than a message arriving meanwhile waits for this
# one to finish. With other deliveries in progress the hand-on stays: it keeps a drain's
# threads overlapping their waits.
QUICK = 0.0005


def current_delivery() -> Delivery | None:
    """The delivery being processed in this thread or task, if any."""
    return _current_delivery.get()


class Worker:
    """Runs actors for messages taken from `broker`, inside the current process.

    Args:
        broker: Where messages come from.
        queues: The queues to consume (default: the queues of every declared actor).
        threads: Threads for sync actors (default 8).
        adaptive_threads: Run fewer of the threads at once while the process is bound by the
            GIL, and all of them while actors wait on I/O (default True; see `ThreadGate`).
        async_concurrency: Async actors in flight at once (default 64), apart from `threads`.
        prefetch: Deliveries taken ahead of processing. The default follows the worker's
            rate: about 25 ms of its work, so that a higher-priority message never waits
            long behind taken ones; at least two per thread (plus the async slots), at most
            128 (see `actors.prefetch`). A number fixes it.
        shutdown_timeout: Seconds that `stop()` lets in-flight work finish (default 30).
        max_messages: Stop after taking this many messages (for recycling child processes);
            those already handed to the threads are processed before it stops.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        queues: Sequence[str] | None = None,
        threads: int = DEFAULT_THREADS,
        adaptive_threads: bool = True,
        async_concurrency: int = DEFAULT_ASYNC_CONCURRENCY,
        prefetch: int | None = None,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        max_messages: int | None = None,
    ) -> None:
        self.broker = broker
        self.queues = list(queues) if queues else None
        self.threads = max(1, threads)
        self.async_concurrency = max(1, async_concurrency)
        self.prefetch = prefetch
        self.shutdown_timeout = shutdown_timeout
        self.max_messages = max_messages
        #: True in a process run by the `actors worker` supervisor, which replaces it if it exits.
        self.supervised = False
        self.stopping = threading.Event()
        self.stopped = threading.Event()
        self._work: queue.SimpleQueue[Delivery | object | None] = queue.SimpleQueue()
        work = self._work
        self._gate = ThreadGate(self.threads, lambda: not work.empty(), adaptive=adaptive_threads)
        self._threads: list[threading.Thread] = []
        self._consumer: Consumer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._async_slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Taken twice per message (intake, finish): those take the plain lock itself, which
        # costs less than entering the Condition; it is not re-entered.
        self._state_lock = threading.Lock()
        self._state = threading.Condition(self._state_lock)
        self._in_flight = 0
        self._taken = 0
        self._stop_started = False
        self._idle = 0  # sync threads waiting for work (under _state_lock)
        self._local = threading.local()  # .reading, .kept: the thread reading and what it keeps
        self._took: dict[str, float] = {}  # actor name -> seconds per message (moving average)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start consuming; returns at once (the work happens in background threads)."""
        actors = registry.declared_actors()
        queues = self.queues or sorted({a.queue_name for a in actors.values()})
        if not queues:
            raise ValueError("no queues to consume: declare actors or pass queues=")
        self.queues = queues
        has_async = any(a.is_async for a in actors.values() if a.queue_name in queues)
        self.broker.emit("after_worker_boot", self)
        self.broker.refresh_hooks()  # middleware idle in this worker drop out of the hot path
        for index in range(self.threads):
            thread = threading.Thread(
                target=self._run_sync_thread, name=f"actors-worker-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        if has_async:
            self._start_loop()
        prefetch = self.prefetch or self.threads * 2 + (self.async_concurrency if has_async else 0)
        self._consumer = self.broker.consume(
            queues, prefetch=prefetch, on_delivery=self._on_delivery
        )
        self._consumer.on_reader_wanted(self._hand_reading_on)
        self._consumer.start()
        if self.prefetch is None:
            threading.Thread(
                target=self._size_prefetch,
                args=(self._consumer, sizing.PrefetchSizer(prefetch)),
                name="actors-prefetch",
                daemon=True,
            ).start()
        logger.info(
            "worker consuming %s with %d threads%s",
            ", ".join(queues),
            self.threads,
            f" and {self.async_concurrency} async slots" if has_async else "",
        )

    def stop(self, timeout: float | None = None) -> None:
        """Stop taking messages, let in-flight work finish, give back the rest, and return.

        Args:
            timeout: Seconds to let in-flight work finish (default: `shutdown_timeout`).
                Work still running then is returned to the broker when the connection closes.
        """
        self._stop(timeout, give_back=True)

    def _recycle(self) -> None:
        """Stop after `max_messages`: what the threads were handed is processed, not given back."""
        self._stop(None, give_back=False)

    def _stop(self, timeout: float | None, *, give_back: bool) -> None:
        with self._state:
            if self._stop_started:
                first = False
            else:
                self._stop_started = first = True
        if not first:  # another thread is stopping this worker (recycling, a signal)
            self.stopped.wait()
            return
        timeout = self.shutdown_timeout if timeout is None else timeout
        self.stopping.set()
        try:
            self.broker.emit_guarded("before_worker_shutdown", None, self)
            if self._consumer is not None:
                self._consumer.stop()
            if give_back:
                self._requeue_waiting()
            self._gate.open()
            for _ in self._threads:
                self._work.put(None)
            if not self._wait_idle(timeout):
                logger.warning("shutdown timeout: returning unfinished messages to the broker")
            self._stop_loop()
        except Exception:
            logger.exception("error while shutting down; closing the connection anyway")
        finally:
            if self._consumer is not None:
                self._consumer.close()
            self.broker.emit_guarded("after_worker_shutdown", None, self)
            self.stopped.set()

    def hard_exit(self, reason: str) -> None:
        """Replace this worker process because an actor cannot be stopped (hard time limit).

        In a supervised child (``actors worker``) this logs `reason` and exits with code 3 at
        once; the supervisor starts a new process, and the broker redelivers the unsettled
        messages. Elsewhere (a `Worker` inside a test or notebook) it only logs: killing the
        host process is not the worker's call.
        """
        if not self.supervised:
            logger.critical("%s; not a supervised worker process, so it keeps running", reason)
            return
        logger.critical("%s; exiting so that the supervisor replaces this process", reason)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(3)

    def _size_prefetch(self, consumer: Consumer, sizer: sizing.PrefetchSizer) -> None:
        """Fit the consumer's prefetch to the rate messages are taken, until the worker stops."""
        current = sizer.floor
        seen, since = self._taken, time.monotonic()
        while not self.stopping.wait(sizing.WINDOW):
            taken, now = self._taken, time.monotonic()
            rate = (taken - seen) / (now - since)
            seen, since = taken, now
            size = sizer.resize(current, rate)
            if size is None:
                continue
            try:
                consumer.set_prefetch(size)
            except Exception:  # keeps the prefetch it had; the worker goes on
                logger.exception("could not change the prefetch to %d", size)
                continue
            logger.debug("prefetch %d -> %d (%.0f messages/s)", current, size, rate)
            current = size

    def _requeue_waiting(self) -> None:
        kept: list[None] = []
        while True:
            try:
                delivery = self._work.get_nowait()
            except queue.Empty:
                break
            if delivery is None:
                kept.append(None)
                continue
            if not isinstance(delivery, Delivery):
                continue  # a wake-up to read: nothing to give back
            try:
                delivery.requeue()
            except Exception:  # closing the connection returns it all the same
                logger.exception("could not return %s at shutdown", delivery.label)
            self._finished()
        for sentinel in kept:
            self._work.put(sentinel)

    def _wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._state:
            while self._in_flight > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._state.wait(remaining)
        return True

    def _start_loop(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._async_slots = asyncio.Semaphore(self.async_concurrency)
        self._loop_thread = threading.Thread(
            target=loop.run_forever, name="actors-event-loop", daemon=True
        )
        self._loop_thread.start()

    def _stop_loop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def cancel_all() -> None:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=5)
            await self.broker.close_async()

        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout=10)
        except TimeoutError:
            logger.error("async actors did not stop within 10 s (is one blocking the loop?)")
        loop.call_soon_threadsafe(loop.stop)
        if self._loop_thread is not None:
            self._loop_thread.join(timeout=5)
            if self._loop_thread.is_alive():
                return  # a blocked loop cannot be closed; it dies with the process
        loop.close()

    # -- intake (consumer thread) ---------------------------------------------------------------

    def _on_delivery(self, delivery: Delivery) -> None:
        with self._state_lock:
            self._in_flight += 1
            self._taken += 1
            taken = self._taken
        try:
            self._dispatch(delivery)
        except Exception:  # the consumer's I/O thread must survive anything one message does
            logger.exception("could not take %s", delivery.label)
            self._finished()
        if self.max_messages is not None and taken == self.max_messages:
            threading.Thread(target=self._recycle, name="actors-recycle", daemon=True).start()

    def _dispatch(self, delivery: Delivery) -> None:
        if self.stopping.is_set():
            self._finished()
            delivery.requeue()
            return
        if not self._resolve(delivery):
            self._finished()
        elif delivery.actor is not None and delivery.actor.is_async:
            loop = self._loop
            if loop is None:
                self._start_loop()
                loop = self._loop
            assert loop is not None
            loop.call_soon_threadsafe(self._spawn, delivery)
        elif getattr(self._local, "reading", False) and self._local.kept is None:
            self._local.kept = delivery  # read by a sync thread: it runs this one itself
        else:
            self._work.put(delivery)

    def _resolve(self, delivery: Delivery) -> bool:
        """Decode and find the actor; dead-letter the delivery and return False if either fails."""
        try:
            message = self.broker.codec.unpack(delivery.body, delivery.headers)
            delivery.message = message
            delivery.actor = registry.get_actor(message.actor)
        except Exception as exc:  # whatever the bytes do, the message goes to the DLQ
            reason = "unknown-actor" if isinstance(exc, ActorNotFound) else "decode-error"
            logger.error("dead-lettering %s: %s", delivery.label, exc)
            self._dead_letter(delivery, Failure.from_exception(reason, exc))
            return False
        return True

    def _finished(self) -> None:
        with self._state_lock:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._state.notify_all()

    # -- sync actors ----------------------------------------------------------------------------

    def _run_sync_thread(self) -> None:
        gate = self._gate
        self._local.kept = None
        gate.enter()
        while (delivery := self._next_delivery_surviving_interrupts()) is not None:
            gate.started()
            began = time.monotonic()
            try:
                self._process_sync(delivery)
            except BaseException:  # the thread must survive anything one message does
                logger.exception("unexpected error processing %s", delivery.label)
            finally:
                self._note_time(delivery, time.monotonic() - began)
                self._finished()
                gate.finished()
        gate.leave()

    def _next_delivery_surviving_interrupts(self) -> Delivery | None:
        while True:
            try:
                return self._next_delivery()
            except (TimeLimitExceeded, Cancelled, WorkerShutdown) as exc:
                # Raised into this thread for an actor that had just finished (the reading
                # link was cut if it landed there): the thread goes on.
                logger.warning("%s arrived after its message finished", type(exc).__name__)

    def _next_delivery(self) -> Delivery | None:
        """The next delivery for this thread, or None when the worker stops.

        Takes the delivery this thread kept from its last read, else one from the queue;
        when there is none, reads from the broker if no other thread is reading, else waits.
        """
        work, local = self._work, self._local
        while True:
            kept: Delivery | None = local.kept
            if kept is not None:
                local.kept = None
                return kept
            try:
                item = work.get_nowait()
            except queue.Empty:
                item = self._read_or_wait()
            if item is None or isinstance(item, Delivery):
                return item
            # else a wake-up to read (_READ), or this thread read: look again

    def _read_or_wait(self) -> Delivery | object | None:
        local, consumer = self._local, self._consumer
        with self._state_lock:
            self._idle += 1
        try:
            local.reading = True
            try:
                read = consumer is not None and consumer.read()
            finally:
                local.reading = False
            if not read:
                return self._work.get()
        finally:
            with self._state_lock:
                self._idle -= 1
        kept = local.kept
        if kept is not None and not self._alone_and_quick(kept):
            self._hand_reading_on()  # this thread runs what it kept: another reads meanwhile
        return _READ

    def _note_time(self, delivery: Delivery, took: float) -> None:
        actor = delivery.actor
        if actor is not None:
            # Unlocked: two threads updating at once lose one sample, which does not matter.
            average = self._took.get(actor.actor_name, took)
            self._took[actor.actor_name] = average + (took - average) / 8

    def _alone_and_quick(self, delivery: Delivery) -> bool:
        """Whether `delivery` is all this worker has in progress and its actor has been
        finishing within `QUICK` (not yet timed: no)."""
        actor = delivery.actor
        return (
            self._in_flight == 1
            and actor is not None
            and self._took.get(actor.actor_name, QUICK) < QUICK
        )

    def _hand_reading_on(self) -> bool:
        """Have an idle thread read next: wake one unless queued work wakes it anyway.

        Returns True if a thread is idle (it reads once it finds no work), else False.
        """
        if not self._idle:
            return False
        if self._work.empty():
            self._work.put(_READ)
        return True

    def _process_sync(self, delivery: Delivery) -> None:
        token = _current_delivery.set(delivery)
        try:
            if not self._before(delivery):
                return
            actor, message = delivery.actor, delivery.message
            assert actor is not None and message is not None
            result: Any = None
            exception: BaseException | None = None
            try:
                result = actor.fn(*message.args, **message.kwargs)
            except BaseException as exc:
                exception = exc
            try:
                self.broker.emit_guarded(
                    "after_process_message", delivery, delivery, result=result, exception=exception
                )
                self._settle(delivery, exception)
            except (TimeLimitExceeded, Cancelled, WorkerShutdown):
                # An interrupt (time limit, cancel) raised just as the actor returned lands
                # here; the message must still be settled, once (a second ack would break the
                # channel).
                if not delivery.settling:
                    self._settle(delivery, exception)
        finally:
            _current_delivery.reset(token)

    def _before(self, delivery: Delivery) -> bool:
        """Run ``before_process_message``; settle and return False if the message is skipped."""
        try:
            self.broker.emit_guarded("before_process_message", delivery, delivery)
        except SkipMessage:
            self.broker.emit_guarded("after_skip_message", delivery, delivery)
            self._settle(delivery, None)
            return False
        return True

    # -- async actors ---------------------------------------------------------------------------

    def _spawn(self, delivery: Delivery) -> None:
        task = asyncio.get_running_loop().create_task(self._process_async(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process_async(self, delivery: Delivery) -> None:
        assert self._async_slots is not None
        try:
            async with self._async_slots:
                if self.stopping.is_set():  # waited for a slot and never started: give it back
                    await asyncio.to_thread(delivery.requeue)
                    return
                await self._run_async(delivery)
        except asyncio.CancelledError:
            if self.stopping.is_set() and not delivery.settling:
                delivery.requeue()
            else:
                raise
        except BaseException:
            logger.exception("unexpected error processing %s", delivery.label)
        finally:
            self._finished()

    async def _run_async(self, delivery: Delivery) -> None:
        _current_delivery.set(delivery)
        if not self._before(delivery):
            return
        actor, message = delivery.actor, delivery.message
        assert actor is not None and message is not None
        result: Any = None
        exception: BaseException | None = None
        try:
            result = await actor.fn(*message.args, **message.kwargs)
        except asyncio.CancelledError as exc:
            if self.stopping.is_set() and not _is_own_cancel(exc):
                raise
            exception = exc
        except Exception as exc:
            exception = exc
        self.broker.emit_guarded(
            "after_process_message", delivery, delivery, result=result, exception=exception
        )
        if delivery.outcome is Outcome.ACK and exception is None:
            delivery.ack()
        else:
            await asyncio.to_thread(self._settle, delivery, exception)

    # -- settlement -----------------------------------------------------------------------------

    def _settle(self, delivery: Delivery, exception: BaseException | None) -> None:
        delivery.settling = True
        if exception is not None and delivery.outcome is Outcome.ACK:
            delivery.reject(Failure.from_exception("failed", exception))
        outcome = delivery.outcome
        if outcome is Outcome.ACK:
            delivery.ack()
        elif outcome is Outcome.DEAD_LETTER:
            assert delivery.failure is not None
            _log_failure(delivery, exception, "dead-lettered")
            self._dead_letter(delivery, delivery.failure)
        else:
            self._republish(delivery, exception)

    def _republish(self, delivery: Delivery, exception: BaseException | None) -> None:
        message = delivery.message
        assert message is not None
        is_retry = delivery.outcome is Outcome.RETRY
        if is_retry:
            options = message.options
            if exception is not None:
                options = {**options, "last_error": f"{type(exception).__name__}: {exception}"}
            message = message.copy(retries=message.retries + 1, options=options)
            _log_failure(delivery, exception, f"retrying in {delivery.delay:.1f}s")
        try:
            self.broker.republish(message, delay=delivery.delay)
        except Exception:
            logger.exception("could not schedule %s again; returning it to its queue", message)
            delivery.requeue()
            return
        delivery.ack()
        if is_retry:
            self.broker.emit_guarded("after_retry", delivery, delivery, delivery.delay)

    def _dead_letter(self, delivery: Delivery, failure: Failure) -> None:
        try:
            delivery.dead_letter(failure)
        except Exception:
            logger.exception("could not dead-letter %s; returning it", delivery.label)
            delivery.requeue()
            return
        self.broker.emit_guarded("after_dead_letter", delivery, delivery, failure)


def _is_own_cancel(exc: asyncio.CancelledError) -> bool:
    """A cancel with a message was asked for by middleware (time limit, cancellation)."""
    return bool(exc.args)


def _log_failure(delivery: Delivery, exception: BaseException | None, what: str) -> None:
    label = delivery.label
    if isinstance(exception, Retry):
        logger.info("%s asked for a retry (%s): %s", label, exception, what)
    elif exception is not None:
        logger.warning("%s failed with %s: %s", label, type(exception).__name__, what,
                       exc_info=exception)  # fmt: skip
    else:
        reason = delivery.failure.reason if delivery.failure else ""
        logger.warning("%s %s (%s)", label, what, reason)
