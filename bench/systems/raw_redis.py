"""Raw redis-py on a stream: the floor for a Redis broker (no framework).

Worker: XREADGROUP COUNT 100 BLOCK 1000, one INCR per message, one XACK per batch.
"""

from __future__ import annotations

from typing import Any

from bench.common import (
    PYTHON,
    DrainPlan,
    LatencyPlan,
    Names,
    WorkerGroup,
    measure_drain,
    measure_latency,
    redis_cleanup,
    redis_client,
)
from bench.systems.base import System
from bench.tasks.raw_workers import READY, encode

GROUP = "workers"


def _setup(names: Names) -> None:
    r = redis_client()
    try:
        r.xgroup_create(names.queue, GROUP, id="0", mkstream=True)
    finally:
        r.close()


def _workers(names: Names, procs: int) -> WorkerGroup:
    argv = [PYTHON, "-m", "bench.tasks.raw_workers", "redis"]
    return WorkerGroup([argv] * procs, names.worker_env(BENCH_GROUP=GROUP), "raw_redis")


def _fill(stream: str, body: bytes, n: int) -> None:
    r = redis_client()
    try:
        for start in range(0, n, 1000):
            pipe = r.pipeline(transaction=False)
            for _ in range(min(1000, n - start)):
                pipe.xadd(stream, {"b": body})
            pipe.execute()
    finally:
        r.close()


class RawRedis(System):
    name = "raw_redis"
    scenarios = frozenset({"redis_drain_1x8", "redis_latency"})
    packages = ("redis",)

    def scenario_redis_drain_1x8(self, n: int) -> dict[str, Any]:
        names = Names(self.name, "redis_drain_1x8")
        _setup(names)
        body = encode(names.counter_key)
        plan = DrainPlan(
            start=lambda: _workers(names, 1),
            ready_pattern=READY,
            ready_count=1,
            fill=lambda k: _fill(names.queue, body, k),
            counter_key=names.counter_key,
            broker="redis",
        )
        try:
            return measure_drain(n, plan)
        finally:
            redis_cleanup(names.prefix)

    def scenario_redis_latency(self, n: int) -> dict[str, Any]:
        names = Names(self.name, "redis_latency")
        _setup(names)
        body = encode(names.counter_key, names.notify_key)
        r = redis_client()
        plan = LatencyPlan(
            start=lambda: _workers(names, 1),
            ready_pattern=READY,
            ready_count=1,
            send=lambda: r.xadd(names.queue, {"b": body}),
            notify_key=names.notify_key,
            broker="redis",
        )
        try:
            return measure_latency(n, plan)
        finally:
            r.close()
            redis_cleanup(names.prefix)


SYSTEM = RawRedis()
