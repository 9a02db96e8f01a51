"""Scale: drain rate, CPU and RSS of one worker process against a deep backlog and many delays.

    python -m bench.scale [--backlog 200000] [--delayed 100000] [--segment 20000] [--shared]

1. ``--backlog`` ready messages are queued, then one ``actors worker -p 1 -t 8`` process (the
   README's default configuration) drains them; the drain is cut into segments of
   ``--segment`` messages and each segment reports msg/s, worker CPU per message and the
   worker's RSS. Flat figures from the first segment to the last mean that the cost per
   message does not grow with the backlog.
2. ``--delayed`` messages are sent with a one-hour delay (held by RabbitMQ's delay ladder),
   then ``--segment`` ready messages are drained by a fresh worker while they wait: compare
   with the first segment of (1).

Runs on a private RabbitMQ node started for the run (tests/support/private_rabbit.py), so that
hour-long delays never reach the shared broker's ladder, unless ``--shared`` (then the delay is
10 minutes and the ladder's copies expire into a deleted queue). The task's counter lives in
the local Redis (db 15). Measures; never asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bench.common import (
    AMQP_URL,
    PYTHON,
    Names,
    WorkerGroup,
    cpu_seconds,
    log,
    redis_cleanup,
    redis_client,
)

TASKS = "bench.tasks.actors_tasks"
READY = "worker consuming"
CHUNK = 1000


@dataclass
class Sample:
    t: float
    count: int
    cpu: float
    rss_mb: float


@contextlib.contextmanager
def amqp_url(shared: bool) -> Iterator[str]:
    if shared:
        yield AMQP_URL
        return
    sys.path.insert(0, os.getcwd())
    from tests.support.private_rabbit import PrivateRabbit

    with PrivateRabbit() as rabbit:
        yield rabbit.url


def load_tasks(names: Names, url: str) -> Any:
    """Import the task module for `names` (again: its actor's queue is fixed at import)."""
    from actors import registry

    os.environ.update(names.worker_env(BENCH_AMQP_URL=url, BENCH_BROKER="rabbitmq"))
    sys.modules.pop(TASKS, None)
    registry.reset()
    return importlib.import_module(TASKS)


def fill(tasks: Any, counter_key: str, n: int, delay: float | None = None) -> float:
    """Queue n messages (CHUNK confirms in flight); return msg/s."""
    broker, message = tasks.broker, tasks.incr.message
    broker.declare_queue(tasks.incr.queue_name)
    t0 = time.perf_counter()
    for start in range(0, n, CHUNK):
        batch = [message(counter_key) for _ in range(min(CHUNK, n - start))]
        if delay is None:
            broker.enqueue_many(batch)
        else:  # enqueue_many takes no delay: the same publish path, with the delay route
            broker._producer.publish([broker._outgoing(broker.codec.pack(m), delay) for m in batch])
        if start and start % 50_000 == 0:
            log(f"  queued {start:,}")
    return n / (time.perf_counter() - t0)


def drain(names: Names, url: str, n: int) -> list[Sample]:
    """Start one worker process, sample until the counter reads n; return the samples."""
    env = names.worker_env(BENCH_AMQP_URL=url, BENCH_BROKER="rabbitmq")
    argv = [PYTHON, "-m", "actors", "worker", TASKS, "-p", "1", "-t", "8", "--broker", url]
    group = WorkerGroup([argv], env, "actors")
    r = redis_client()
    samples: list[Sample] = []
    try:
        group.wait_ready(READY, 1)
        procs = group.processes()
        child = procs[-1]
        deadline = time.monotonic() + max(120.0, n / 200.0)
        while time.monotonic() < deadline:
            count = int(r.get(names.counter_key) or 0)
            rss = child.memory_info().rss / 2**20
            samples.append(Sample(time.perf_counter(), count, cpu_seconds(procs), rss))
            if count >= n:
                break
            time.sleep(0.25)
    finally:
        group.stop()
        r.close()
    return samples


def segments(samples: list[Sample], size: int) -> list[dict[str, float]]:
    """Per segment of `size` messages: msg/s, worker CPU us/msg, RSS at its end."""
    started = [s for s in samples if s.count > 0]
    if not started:
        return []
    out, first = [], started[0]
    mark = first
    for s in started[1:]:
        if s.count - mark.count >= size or s is started[-1]:
            done = s.count - mark.count
            if done > 0:
                out.append({
                    "from": mark.count, "to": s.count,
                    "msg_s": done / (s.t - mark.t),
                    "cpu_us": (s.cpu - mark.cpu) / done * 1e6,
                    "rss_mb": s.rss_mb,
                })  # fmt: skip
            mark = s
    return out


def table(rows: list[dict[str, float]]) -> str:
    lines = ["| messages | msg/s | worker CPU us/msg | worker RSS MB |", "|---|---:|---:|---:|"]
    for row in rows:
        lines.append(
            f"| {row['from']:,.0f}-{row['to']:,.0f} | {row['msg_s']:,.0f} | {row['cpu_us']:.0f} "
            f"| {row['rss_mb']:.1f} |"
        )
    return "\n".join(lines)


def run(backlog: int, delayed: int, size: int, shared: bool) -> None:
    """Run both measurements, printing each table as it is ready."""
    out: list[str] = []
    with amqp_url(shared) as url:
        names = Names("actors", "scale-backlog")
        tasks = load_tasks(names, url)
        try:
            log(f"queueing {backlog:,} messages")
            rate = fill(tasks, names.counter_key, backlog)
            log("draining")
            rows = segments(drain(names, url, backlog), size)
            out += [f"### {backlog:,}-message backlog (queued at {rate:,.0f} msg/s)", "",
                    table(rows), ""]  # fmt: skip
            print("\n".join(out), flush=True)
        finally:
            tasks.broker.delete_queue(names.queue)
            tasks.broker.delete_queue(f"{names.queue}.DLQ")
            tasks.broker.close()
            redis_cleanup(names.prefix)
        names = Names("actors", "scale-delayed")
        tasks = load_tasks(names, url)
        try:
            delay = 600.0 if shared else 3600.0
            log(f"sending {delayed:,} messages with a {delay:.0f} s delay")
            rate = fill(tasks, f"{names.counter_key}:never", delayed, delay)
            fill(tasks, names.counter_key, size)
            log("draining beside them")
            rows = segments(drain(names, url, size), size)
            out = [f"### {size:,} ready messages while {delayed:,} delayed ones wait "
                   f"(sent at {rate:,.0f} msg/s)", "", table(rows), ""]  # fmt: skip
            print("\n".join(out), flush=True)
        finally:
            tasks.broker.delete_queue(names.queue)
            tasks.broker.delete_queue(f"{names.queue}.DLQ")
            tasks.broker.close()
            redis_cleanup(names.prefix)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--backlog", type=int, default=200_000)
    parser.add_argument("--delayed", type=int, default=100_000)
    parser.add_argument("--segment", type=int, default=20_000)
    parser.add_argument("--shared", action="store_true", help="use the shared RabbitMQ")
    args = parser.parse_args()
    run(args.backlog, args.delayed, args.segment, args.shared)


if __name__ == "__main__":
    main()
