"""Status: records each message's state in the backend, for `actors.status(message_id)`."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from actors import registry
from actors.delivery import Outcome
from actors.middleware._backend import optional_backend
from actors.middleware.base import Middleware
from actors.status import DEFAULT_STATUS_TTL, State

if TYPE_CHECKING:
    from actors.broker import Broker
    from actors.delivery import Delivery, Failure
    from actors.message import Message
    from actors.worker import Worker

logger = logging.getLogger("actors.middleware.status")

_BATCH = 500  # status writes sent in one pipeline at most
_LINGER = 0.05  # seconds the writer waits for more writes before it sends a batch

# Dead-letter reasons that are not an error of the actor: the state is "dead-lettered".
_NOT_ACTOR_FAILURES = frozenset({"decode-error", "unknown-actor", "max-age", "poison"})

# The states written for every message, looked up once (enum attribute access is not free).
_RUNNING = State.RUNNING.value
_SUCCEEDED = State.SUCCEEDED.value

_Write = tuple["Status", str, dict[str, str]]
_pending: contextvars.ContextVar[list[_Write] | None] = contextvars.ContextVar(
    "actors_status_batch", default=None
)


@contextlib.contextmanager
def batched_status() -> Iterator[None]:
    """Collect the "queued" writes of the enqueues in this block and send them in one batch.

    Used around ``broker.enqueue_many`` (groups, pipelines): one round trip instead of one per
    message.
    """
    token = _pending.set([])
    try:
        yield
        writes = _pending.get() or []
    finally:
        _pending.reset(token)
    for tracker in {id(w[0]): w[0] for w in writes}.values():
        tracker.write([(mid, f) for t, mid, f in writes if t is tracker], only_if_new=True)


class _Writer:
    """A thread that sends the worker's status writes in pipelined batches, in order.

    Hooks only queue their write (no round trip on the worker's hot path, no blocking call on
    the event loop); the thread sends whatever accumulated in one pipeline. A status may
    therefore lag the message by up to about 50 ms.

    While it lingers the thread sleeps on an event that only `flush` and `close` set, not on
    the queue: a write that arrives then is a plain append, with no thread to wake.
    """

    def __init__(self, write: Callable[[list[tuple[str, dict[str, str]]]], None]) -> None:
        self._write = write
        self._queue: queue.SimpleQueue[tuple[str, dict[str, str]] | threading.Event | None] = (
            queue.SimpleQueue()
        )
        self._urgent = threading.Event()
        self._thread = threading.Thread(target=self._run, name="actors-status", daemon=True)
        self._thread.start()

    def put(self, message_id: str, fields: dict[str, str]) -> None:
        self._queue.put((message_id, fields))

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued, then stop."""
        self._queue.put(None)
        self._urgent.set()
        self._thread.join(timeout)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every write queued so far was sent."""
        done = threading.Event()
        self._queue.put(done)
        self._urgent.set()
        done.wait(timeout)

    def _run(self) -> None:
        running = True
        while running:
            batch: list[tuple[str, dict[str, str]]] = []
            marks: list[threading.Event] = []
            item: tuple[str, dict[str, str]] | threading.Event | None = self._queue.get()
            # Linger after the first write so that a busy worker sends one pipeline per batch,
            # not one per message; a flush (or stop) sends at once.
            self._urgent.wait(_LINGER)
            self._urgent.clear()
            while True:
                if item is None:
                    running = False
                elif isinstance(item, threading.Event):
                    marks.append(item)
                else:
                    batch.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            for start in range(0, len(batch), _BATCH):
                self._send(batch[start : start + _BATCH])
            for mark in marks:
                mark.set()

    def _send(self, batch: list[tuple[str, dict[str, str]]]) -> None:
        if not batch:
            return
        merged: dict[str, dict[str, str]] = {}  # a fast message's running + final: one write
        for message_id, fields in batch:
            merged.setdefault(message_id, {}).update(fields)
        try:
            self._write(list(merged.items()))
        except Exception:
            logger.exception("could not write %d status updates", len(batch))


class Status(Middleware):
    """Writes the state of every message to the backend, once per transition.

    States: ``queued`` (after the broker took it), ``running`` (before the actor runs),
    ``retrying`` (failed, will run again), and a final one: ``succeeded``, ``failed`` (the
    actor raised and will not run again), ``dead-lettered`` (dead-lettered for another reason:
    ``max-age``, undecodable ...) or ``cancelled``. Each write is one backend round trip
    (a hash and its TTL, pipelined); the "queued" write never overwrites a later state.
    The producer's "queued" write is made before ``send()`` returns; a worker's writes go
    through a thread of their own that batches them into pipelines, so the status may lag the
    message by up to about 50 ms (`flush` waits for them).

    Without a configured backend (RabbitMQ and no ``set_backend``), status tracking is off.

    Actor options:
        track_status: Record the status of this actor's messages (default True).

    Args:
        ttl: How long a status is kept after its last change, in seconds (default one day).
    """

    actor_options: ClassVar[frozenset[str]] = frozenset({"track_status"})

    def __init__(self, *, ttl: float = DEFAULT_STATUS_TTL) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._writer: _Writer | None = None
        self._workers = 0
        #: A worker booted without a backend: its hooks record nothing (no per-message work).
        self._off = False

    @property
    def handles_messages(self) -> bool:
        """False in a worker without a backend: there is nowhere to record statuses."""
        return not self._off

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        """Start the thread that sends the worker's status writes."""
        with self._lock:
            self._workers += 1
            if self._writer is None:
                self._off = optional_backend("status tracking") is None
                if not self._off:
                    self._writer = _Writer(self.write)

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        """Send the last writes and stop the thread with the last worker."""
        with self._lock:
            self._workers -= 1
            writer = self._writer if self._workers <= 0 else None
            if writer is not None:
                self._writer = None
        if writer is not None:
            writer.close()

    def flush(self) -> None:
        """Wait until the status writes queued by this process's workers were sent."""
        writer = self._writer
        if writer is not None:
            writer.flush()

    def write_through(self, message_id: str, fields: dict[str, str]) -> None:
        """Write now, after the writes queued before it (progress reports)."""
        writer = self._writer
        if writer is None:
            self.write([(message_id, fields)])
        else:
            writer.put(message_id, fields)
            writer.flush()

    def write(self, items: list[tuple[str, dict[str, str]]], *, only_if_new: bool = False) -> None:
        """Write status fields of several messages in one round trip (if a backend is set)."""
        backend = optional_backend("status tracking")
        if backend is not None:
            backend.put_statuses(items, self.ttl, only_if_new=only_if_new)

    # -- producer side --------------------------------------------------------------------------

    def after_enqueue(self, broker: Broker, message: Message[Any], delay: float | None) -> None:
        """Record ``queued`` (unless a worker already recorded a later state)."""
        if not _tracked(message.options, message.actor):
            return
        if optional_backend("status tracking") is None:
            return  # checked first: no fields built for nothing on every send
        now = _now()
        fields = {"state": State.QUEUED.value, "actor": message.actor, "queue": message.queue,
                  "enqueued_at": f"{message.enqueued_at:.6f}", "updated_at": now,
                  "attempts": "0"}  # fmt: skip
        batch = _pending.get()
        if batch is not None:
            batch.append((self, message.id, fields))
        else:
            self.write([(message.id, fields)], only_if_new=True)

    # -- worker side ----------------------------------------------------------------------------

    def before_process_message(self, broker: Broker, delivery: Delivery) -> None:
        """Record ``running``."""
        message = delivery.message
        if self._off or message is None or not delivery.option("track_status", True):
            return
        now = _now()
        self._put(message.id, {"state": _RUNNING, "actor": message.actor, "queue": message.queue,
                               "attempts": str(message.retries + 1), "started_at": now,
                               "updated_at": now})  # fmt: skip

    def after_process_message(
        self,
        broker: Broker,
        delivery: Delivery,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """Record ``succeeded``, ``retrying``, or ``queued`` for a message put back."""
        if self._off:
            return
        outcome = delivery.outcome
        if outcome is Outcome.ACK and exception is None:
            if delivery.option("track_status", True):
                now = _now()
                self._put(delivery.message_id, {"state": _SUCCEEDED, "progress": "100",
                                                "finished_at": now, "updated_at": now})  # fmt: skip
        elif outcome is Outcome.RETRY:
            error = f"{type(exception).__name__}: {exception}" if exception is not None else ""
            self._set(delivery, state=State.RETRYING.value, error=error, updated_at=_now())
        elif outcome is Outcome.DEFER:
            self._set(delivery, state=State.QUEUED.value, updated_at=_now())

    def after_skip_message(self, broker: Broker, delivery: Delivery) -> None:
        """Undo ``running`` for a message that did not run (put back by limits, or dropped)."""
        message = delivery.message
        if message is None:
            return
        fields = {"started_at": "", "attempts": str(message.retries), "updated_at": _now()}
        if delivery.outcome is Outcome.DEFER:
            fields["state"] = State.QUEUED.value
        self._set(delivery, **fields)

    def after_dead_letter(self, broker: Broker, delivery: Delivery, failure: Failure) -> None:
        """Record ``failed``, ``dead-lettered`` or ``cancelled``."""
        now = _now()
        error = f"{failure.error_type}: {failure.error_message}" if failure.error_type else ""
        self._set(delivery, state=_final_state(failure).value, reason=failure.reason,
                  error=error, finished_at=now, updated_at=now)  # fmt: skip

    def _set(self, delivery: Delivery, **fields: str) -> None:
        if self._off:
            return
        if delivery.actor is not None and not delivery.option("track_status", True):
            return
        self._put(delivery.message_id, fields)

    def _put(self, message_id: str, fields: dict[str, str]) -> None:
        writer = self._writer
        if writer is not None:
            writer.put(message_id, fields)
        else:
            self.write([(message_id, fields)])


def _final_state(failure: Failure) -> State:
    if failure.reason == "cancelled":
        return State.CANCELLED
    if failure.reason in _NOT_ACTOR_FAILURES or not failure.error_type:
        return State.DEAD_LETTERED
    return State.FAILED


def _tracked(options: Mapping[str, Any], actor_name: str) -> bool:
    if "track_status" in options:
        return bool(options["track_status"])
    declared = registry.find_actor(actor_name)
    return declared is None or bool(declared.options.get("track_status", True))


def _now() -> str:
    return f"{time.time():.6f}"
