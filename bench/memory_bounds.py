"""Worker memory against 200,000 queued and 100,000 delayed messages (issue 8, point 8).

    python -m bench.memory_bounds [--queued 200000] [--delayed 100000] [--brokers rabbitmq,redis]

The measurement is tests/faults/memory.py (the suite runs it scaled down in
tests/faults/test_memory.py): warm RSS of a worker process after a warm-up batch, then the peak
RSS of a fresh worker process draining the deep queue while the delayed messages wait. RabbitMQ
runs on a private node started for the run (hour-long delays never reach the shared broker's
ladder); Redis on the local Redis under a namespace of its own, deleted afterwards. Measures;
never asserts.
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from pathlib import Path

from actors.brokers.rabbitmq import RabbitmqBroker
from actors.brokers.redis import RedisBroker
from tests.faults.memory import MemoryRun, measure
from tests.redis_support import REDIS_URL, delete_namespace
from tests.support.private_rabbit import PrivateRabbit


def run_rabbitmq(queued: int, delayed: int, workdir: Path) -> MemoryRun:
    """Measure on a private RabbitMQ node (started and destroyed here)."""
    with PrivateRabbit() as rabbit:
        broker = RabbitmqBroker(url=rabbit.url, connect_timeout=30)
        try:
            return measure(
                broker, rabbit.url, "memory-bounds", workdir,
                queued=queued, delayed=delayed, timeout=1800,
            )  # fmt: skip
        finally:
            broker.close()


def run_redis(queued: int, delayed: int, workdir: Path) -> MemoryRun:
    """Measure on the local Redis under a fresh namespace (deleted afterwards)."""
    namespace = f"bench-memory-{uuid.uuid4().hex[:6]}"
    broker = RedisBroker(url=REDIS_URL, namespace=namespace)
    try:
        return measure(
            broker, f"{REDIS_URL}?namespace={namespace}", "memory-bounds", workdir,
            queued=queued, delayed=delayed, timeout=1800,
        )  # fmt: skip
    finally:
        broker.close()
        delete_namespace(namespace)


RUNNERS = {"rabbitmq": run_rabbitmq, "redis": run_redis}


def main() -> None:
    """Parse the arguments, run each broker in turn and print one line per broker."""
    parser = argparse.ArgumentParser(prog="python -m bench.memory_bounds")
    parser.add_argument("--queued", type=int, default=200_000)
    parser.add_argument("--delayed", type=int, default=100_000)
    parser.add_argument("--brokers", default="rabbitmq,redis")
    args = parser.parse_args()
    for kind in args.brokers.split(","):
        with tempfile.TemporaryDirectory(prefix="actors-memory-") as workdir:
            run = RUNNERS[kind](args.queued, args.delayed, Path(workdir))
        print(f"{kind}: {run.describe()}", flush=True)


if __name__ == "__main__":
    main()
