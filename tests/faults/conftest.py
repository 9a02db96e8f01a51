"""Fixtures of the fault suite: worker processes that are always cleaned up, and the summary."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from actors.broker import Broker
from tests.brokers import RABBITMQ_URL, REDIS_URL
from tests.faults.support import REPORTS, WorkerProcess
from tests.rabbitmq_support import open_rabbitmq_broker
from tests.redis_support import open_redis_broker
from tests.support.ledger import Ledger

#: Seconds before a Redis worker's unacknowledged messages go to another worker, in these tests.
REDIS_CLAIM_AFTER = 2


@dataclass(frozen=True)
class Target:
    """A broker under test: the producer's broker object, the worker's URL and the queue."""

    kind: str
    broker: Broker
    url: str
    queue: str


@pytest.fixture(params=["rabbitmq", "redis"])
def target(
    request: pytest.FixtureRequest,
    namespace: str,
    cleanups: Callable[[Callable[[], object]], None],
) -> Target:
    """The shared RabbitMQ or Redis, isolated under the test's namespace (faults that only kill
    our own worker processes are safe there; destructive ones use private servers)."""
    queue = f"{namespace}-q"
    if request.param == "rabbitmq":
        broker: Broker = open_rabbitmq_broker(namespace=namespace, cleanups=cleanups)
        return Target("rabbitmq", broker, RABBITMQ_URL, queue)
    broker = open_redis_broker(
        namespace=namespace, cleanups=cleanups, claim_after=REDIS_CLAIM_AFTER
    )
    url = f"{REDIS_URL}?namespace={namespace}&claim_after={REDIS_CLAIM_AFTER}"
    return Target("redis", broker, url, queue)


class WorkerFactory(Protocol):
    """Starts a `WorkerProcess`; every one is killed (if still running) when the test ends."""

    def __call__(
        self, broker_url: str, queue: str, ledger: Ledger, **options: Any
    ) -> WorkerProcess: ...


@pytest.fixture
def worker_process(tmp_path: Path) -> Iterator[WorkerFactory]:
    """Factory of started ``actors worker tests.faults.app`` processes."""
    started: list[WorkerProcess] = []

    def make(broker_url: str, queue: str, ledger: Ledger, **options: Any) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(started)}.log"
        process = WorkerProcess(
            broker_url=broker_url, queue=queue, ledger=ledger, log_path=log_path, **options
        )
        started.append(process)
        return process.start()

    yield make
    for process in started:
        process.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Show every fault test's ledger report (sent, lost, duplicates) at the end of the run."""
    if REPORTS:
        terminalreporter.section("fault ledgers")
        for text in REPORTS:
            terminalreporter.write_line(text)
            terminalreporter.write_line("")
