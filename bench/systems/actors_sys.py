"""actors: RabbitmqBroker and RedisBroker, workers via the `actors worker` CLI.

Workers run as a README user runs them, ``actors worker bench.tasks.actors_tasks -p P -t 8
--broker URL`` (default configuration: default middleware stack, default prefetch, publisher
confirms on). ``drain_bare_1x8`` is the one exception: the broker is built in the task module
with ``middleware=[]``, to price the default stack.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from bench.common import (
    PYTHON,
    CpuWindow,
    DrainPlan,
    LatencyPlan,
    Names,
    WorkerGroup,
    amqp_delete,
    measure_delayed,
    measure_drain,
    measure_latency,
    measure_send,
    redis_cleanup,
    send_result,
)
from bench.systems.base import System
from bench.systems.raw_pika import wait_queued

READY = "worker consuming"
TASKS = "bench.tasks.actors_tasks"
CHUNK = 1000  # messages per enqueue_many call (confirms pipelined within a chunk)
DELAY_S = 1.0


def _env(names: Names, broker: str, *, confirm: str = "1", bare: bool = False) -> dict[str, str]:
    """``confirm``: "1" confirms streamed (the default), "wait" wait for each, "0" none."""
    return names.worker_env(
        BENCH_BROKER=broker,
        BENCH_CONFIRM=confirm,
        BENCH_MIDDLEWARE="bare" if bare else "default",
    )


def _tasks(names: Names, broker: str = "rabbitmq", **options: Any) -> Any:
    """Import the task module in this process, configured like the workers."""
    os.environ.update(_env(names, broker, **options))
    sys.modules.pop(TASKS, None)
    return importlib.import_module(TASKS)


def _workers(names: Names, broker: str, procs: int, *, bare: bool = False) -> WorkerGroup:
    env = _env(names, broker, bare=bare)
    argv = [PYTHON, "-m", "actors", "worker", TASKS, "-p", str(procs), "-t", "8"]
    if not bare:
        os.environ.update(env)
        argv += ["--broker", importlib.import_module(TASKS).broker_url()]
    return WorkerGroup([argv], env, "actors")


def _cleanup(names: Names) -> None:
    q = names.queue
    amqp_delete([q, f"{q}.DLQ"])
    redis_cleanup(names.prefix)


def _fill_many(tasks: Any, counter_key: str, n: int) -> None:
    """Publish n messages with ``enqueue_many``, CHUNK confirms in flight at a time."""
    message = tasks.incr.message
    for start in range(0, n, CHUNK):
        tasks.broker.enqueue_many([message(counter_key) for _ in range(min(CHUNK, n - start))])


def _fill_delayed(tasks: Any, counter_key: str, n: int) -> None:
    """n messages due DELAY_S after their publish, CHUNK confirms in flight at a time.

    ``enqueue_many`` takes no delay, and one confirmed ``send_with_options(delay=...)`` at a
    time (~1,000/s) would make the fill, not the worker, the bottleneck; so this goes one
    level down, to the same publish path with the delay route.
    """
    broker, message = tasks.broker, tasks.incr.message
    broker.declare_queue(tasks.incr.queue_name)
    for start in range(0, n, CHUNK):
        batch = [message(counter_key) for _ in range(min(CHUNK, n - start))]
        broker._producer.publish([broker._outgoing(broker.codec.pack(m), DELAY_S) for m in batch])


class Actors(System):
    name = "actors"
    scenarios = frozenset(
        {
            "send_confirm",
            "send_confirm_wait",
            "send_noconfirm",
            "bulk_confirm",
            "drain_1x8",
            "drain_2x8",
            "drain_bare_1x8",
            "drain_delayed_1x8",
            "latency",
            "latency_wait",
            "latency_noconfirm",
            "redis_drain_1x8",
            "redis_latency",
        }
    )
    packages = ("actors-runtime", "pika", "redis", "msgpack")

    def _send(self, scenario: str, n: int, confirm: str) -> dict[str, Any]:
        names = Names(self.name, scenario)
        tasks = _tasks(names, confirm=confirm)
        send = tasks.incr.send
        try:
            send(names.counter_key)  # declares the queues outside the timing
            tasks.broker.flush()
            return measure_send(
                n,
                lambda _: send(names.counter_key),
                "rabbitmq",
                lambda: {"queued": wait_queued(names.queue, n + 1) - 1},
                finish=tasks.broker.flush,  # streamed confirms: the clock waits for the last
            )
        finally:
            tasks.broker.close()
            _cleanup(names)

    def scenario_send_confirm(self, n: int) -> dict[str, Any]:
        return self._send("send_confirm", n, confirm="1")

    def scenario_send_confirm_wait(self, n: int) -> dict[str, Any]:
        return self._send("send_confirm_wait", n, confirm="wait")

    def scenario_send_noconfirm(self, n: int) -> dict[str, Any]:
        return self._send("send_noconfirm", n, confirm="0")

    def scenario_bulk_confirm(self, n: int) -> dict[str, Any]:
        """``broker.enqueue_many`` in chunks of 1000: the confirms of a chunk are in flight."""
        import time

        names = Names(self.name, "bulk_confirm")
        tasks = _tasks(names)
        try:
            tasks.incr.send(names.counter_key)
            cpu = CpuWindow("rabbitmq")
            cpu.restart_clock()
            _fill_many(tasks, names.counter_key, n)
            elapsed = time.perf_counter() - cpu.t0
            client = cpu.client_cpu()
            queued = wait_queued(names.queue, n + 1) - 1
            return send_result(n, elapsed, client, cpu) | {"queued": queued, "chunk": CHUNK}
        finally:
            tasks.broker.close()
            _cleanup(names)

    def _drain(
        self,
        scenario: str,
        n: int,
        broker: str,
        procs: int,
        *,
        bare: bool = False,
        measure: Callable[[int, DrainPlan], dict[str, Any]] = measure_drain,
        fill: Callable[[Any, str, int], None] = _fill_many,
    ) -> dict[str, Any]:
        names = Names(self.name, scenario)
        tasks = _tasks(names, broker)
        tasks.broker.declare_queue(tasks.incr.queue_name)
        plan = DrainPlan(
            start=lambda: _workers(names, broker, procs, bare=bare),
            ready_pattern=READY,
            ready_count=procs,
            fill=lambda k: fill(tasks, names.counter_key, k),
            counter_key=names.counter_key,
            broker=broker,
            amqp_queue=names.queue if broker == "rabbitmq" else None,
            consumers=procs,
        )
        try:
            return measure(n, plan)
        finally:
            tasks.broker.close()
            _cleanup(names)

    def scenario_drain_1x8(self, n: int) -> dict[str, Any]:
        return self._drain("drain_1x8", n, "rabbitmq", 1)

    def scenario_drain_2x8(self, n: int) -> dict[str, Any]:
        return self._drain("drain_2x8", n, "rabbitmq", 2)

    def scenario_drain_bare_1x8(self, n: int) -> dict[str, Any]:
        return self._drain("drain_bare_1x8", n, "rabbitmq", 1, bare=True)

    def scenario_drain_delayed_1x8(self, n: int) -> dict[str, Any]:
        return self._drain(
            "drain_delayed_1x8",
            n,
            "rabbitmq",
            1,
            measure=lambda k, plan: measure_delayed(k, plan, DELAY_S),
            fill=_fill_delayed,
        )

    def scenario_redis_drain_1x8(self, n: int) -> dict[str, Any]:
        return self._drain("redis_drain_1x8", n, "redis", 1)

    def _latency(self, scenario: str, n: int, broker: str, confirm: str = "1") -> dict[str, Any]:
        names = Names(self.name, scenario)
        tasks = _tasks(names, broker, confirm=confirm)
        send = tasks.incr.send
        plan = LatencyPlan(
            start=lambda: _workers(names, broker, 1),
            ready_pattern=READY,
            ready_count=1,
            send=lambda: send(names.counter_key, names.notify_key),
            notify_key=names.notify_key,
            broker=broker,
            amqp_queue=names.queue if broker == "rabbitmq" else None,
        )
        try:
            tasks.broker.declare_queue(tasks.incr.queue_name)
            return measure_latency(n, plan)
        finally:
            tasks.broker.close()
            _cleanup(names)

    def scenario_latency(self, n: int) -> dict[str, Any]:
        return self._latency("latency", n, "rabbitmq")

    def scenario_latency_wait(self, n: int) -> dict[str, Any]:
        return self._latency("latency_wait", n, "rabbitmq", confirm="wait")

    def scenario_latency_noconfirm(self, n: int) -> dict[str, Any]:
        return self._latency("latency_noconfirm", n, "rabbitmq", confirm="0")

    def scenario_redis_latency(self, n: int) -> dict[str, Any]:
        return self._latency("redis_latency", n, "redis")


SYSTEM = Actors()
