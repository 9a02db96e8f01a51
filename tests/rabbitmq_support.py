"""Opening RabbitMQ brokers for tests, and removing every queue a test created."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actors.brokers.rabbitmq import RabbitmqBroker
from tests.brokers import RABBITMQ_URL


def open_rabbitmq_broker(
    *,
    namespace: str,
    cleanups: Callable[[Callable[[], object]], None],
    url: str = RABBITMQ_URL,
    **options: Any,
) -> RabbitmqBroker:
    """A broker whose test queues start with `namespace`; they are deleted after the test.

    The shared delay ladder (``actors.delay.*``) stays: a delayed test message whose queue was
    deleted expires from the ladder and is dropped, since nothing is bound for it any more.
    """
    options.setdefault("connection_name", namespace)
    options.setdefault("connect_timeout", 10.0)
    broker = RabbitmqBroker(url=url, **options)
    cleanups(broker.close)
    cleanups(lambda: delete_queues_with_prefix(broker, namespace))
    return broker


def delete_queues_with_prefix(broker: RabbitmqBroker, prefix: str) -> None:
    """Delete every queue whose name starts with `prefix` (DLQs included)."""
    for name in broker.queue_names():
        if name.startswith(prefix):
            broker.delete_queue(name)
