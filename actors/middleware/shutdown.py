"""Shutdown notifications: actors can learn that their worker is stopping."""

from __future__ import annotations

import contextvars
import threading
from typing import TYPE_CHECKING, Any, ClassVar

from actors.errors import WorkerShutdown
from actors.middleware._interrupt import interrupt_thread
from actors.middleware.base import Middleware

if TYPE_CHECKING:
    from actors.broker import Broker
    from actors.delivery import Delivery
    from actors.worker import Worker

_stopping: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "actors_worker_stopping", default=None
)


def worker_is_stopping() -> bool:
    """Tell whether the worker running the calling actor has begun to shut down.

    Long actors can check it between steps and return early (or raise `actors.Retry`) so that
    the shutdown does not wait for them. False outside an actor.
    """
    event = _stopping.get()
    return event is not None and event.is_set()


class ShutdownNotifications(Middleware):
    """Lets actors see that their worker is stopping, and optionally interrupts sync actors.

    `actors.worker_is_stopping()` works in every actor. With ``notify_shutdown=True``, a sync
    actor still running when its worker starts to stop gets `actors.WorkerShutdown` (a
    `BaseException`) raised in its thread; its message is then put back on its queue without
    spending a retry. Async actors are cancelled by the worker itself when its shutdown
    timeout runs out, and are put back the same way.

    Actor options:
        notify_shutdown: Raise `WorkerShutdown` into this sync actor at shutdown (default False).
    """

    actor_options: ClassVar[frozenset[str]] = frozenset({"notify_shutdown"})

    def __init__(self) -> None:
        self._stopping: dict[Worker, threading.Event] = {}
        self._threads: dict[Delivery, int] = {}

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        """Remember the worker's stopping flag."""
        self._stopping[worker] = worker.stopping

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        """Forget the worker."""
        self._stopping.pop(worker, None)

    def before_process_message(self, broker: Broker, delivery: Delivery) -> None:
        """Expose the stopping flag to the actor; note the thread of notified sync actors."""
        if self._stopping:
            event = next(iter(self._stopping.values()))
            if _stopping.get() is not event:  # a worker thread keeps it from its last message
                _stopping.set(event)
        actor = delivery.actor
        if actor is not None and not actor.is_async and delivery.option("notify_shutdown"):
            self._threads[delivery] = threading.get_ident()

    def before_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        """Interrupt the sync actors that asked to be notified."""
        for thread_id in list(self._threads.values()):
            interrupt_thread(thread_id, WorkerShutdown)

    def after_process_message(
        self,
        broker: Broker,
        delivery: Delivery,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """Put an interrupted message back without spending a retry."""
        thread_id = self._threads.pop(delivery, None)
        if isinstance(exception, WorkerShutdown):
            delivery.defer(0.0)
        elif thread_id is not None and exception is None and worker_is_stopping():
            interrupt_thread(thread_id, None)  # returned just as the interrupt was sent
