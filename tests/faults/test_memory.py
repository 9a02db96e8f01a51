"""Memory bounds: a deep queue and many delayed messages do not grow the worker.

Scaled down to 10,000 queued and 10,000 delayed messages to fit the suite's time budget; the
full 200,000 / 100,000 run is ``python -m bench.memory_bounds`` (same code, tests/faults/memory.py).
RabbitMQ runs on the private node so that 10,000 hour-long delays never sit in the shared
broker's delay ladder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest

from actors import names
from actors.broker import Broker
from actors.brokers.rabbitmq import RabbitmqBroker
from actors.brokers.rabbitmq._topology import DELAY_LEVELS, delay_queue
from actors.errors import QueueNotFound
from tests.brokers import REDIS_URL
from tests.faults.memory import MiB, measure
from tests.faults.support import REPORTS
from tests.redis_support import open_redis_broker
from tests.support.private_rabbit import PrivateRabbit

pytestmark = pytest.mark.faults

Cleanups = Callable[[Callable[[], object]], None]
QUEUED = 10_000
DELAYED = 10_000
#: Allowed growth of the worker's RSS from warm to peak. Prefetch is 16 to 128 small
#: deliveries; what grows at all is allocator slack and the ledger's SQLite cache, measured at
#: ~1-6 MiB here.
GROWTH_LIMIT = 25 * MiB


@pytest.fixture(params=["rabbitmq", "redis"])
def deep(
    request: pytest.FixtureRequest, namespace: str, cleanups: Cleanups
) -> tuple[str, Broker, str, str]:
    """(kind, producer broker, worker URL, queue) for the memory test."""
    queue = f"{namespace}-q"
    if request.param == "redis":
        broker: Broker = open_redis_broker(namespace=namespace, cleanups=cleanups)
        return "redis", broker, f"{REDIS_URL}?namespace={namespace}", queue
    rabbit: PrivateRabbit = request.getfixturevalue("private_rabbit")
    rabbitmq = RabbitmqBroker(url=rabbit.url, connect_timeout=20)
    cleanups(rabbitmq.close)
    cleanups(lambda: _forget_rabbitmq_queue(rabbitmq, queue))
    return "rabbitmq", rabbitmq, rabbit.url, queue


def _forget_rabbitmq_queue(broker: RabbitmqBroker, queue: str) -> None:
    """Delete the queue and empty the private node's delay ladder of its hour-long delays."""
    for name in (queue, names.dead_letter_queue(queue)):
        broker.delete_queue(name)
    for level in range(DELAY_LEVELS):
        with contextlib.suppress(QueueNotFound):
            broker.purge(delay_queue(level))


@pytest.mark.timeout(300)
def test_deep_queue_and_many_delays_do_not_grow_the_worker(
    deep: tuple[str, Broker, str, str], tmp_path: Path
) -> None:
    kind, broker, url, queue = deep
    run = measure(broker, url, queue, tmp_path, queued=QUEUED, delayed=DELAYED, timeout=180)
    text = f"memory ({kind}): {run.describe()}"
    REPORTS.append(text)
    print(text)
    assert run.processed == QUEUED
    assert run.growth <= GROWTH_LIMIT, text
