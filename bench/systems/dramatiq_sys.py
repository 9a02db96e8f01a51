"""Dramatiq 2.x: RabbitmqBroker (pika) and RedisBroker, workers via the `dramatiq` CLI."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from bench.common import (
    PYTHON,
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
)
from bench.systems.base import System
from bench.systems.raw_pika import wait_queued

READY = "Worker process is ready for action."
TASKS = "bench.tasks.dramatiq_tasks"


def _env(names: Names, broker: str, confirm: bool) -> dict[str, str]:
    return names.worker_env(BENCH_BROKER=broker, BENCH_CONFIRM="1" if confirm else "0")


def _actor(names: Names, broker: str = "rabbitmq", confirm: bool = False) -> Any:
    """Import the task module in this process, configured like the workers."""
    os.environ.update(_env(names, broker, confirm))
    sys.modules.pop(TASKS, None)
    return importlib.import_module(TASKS).incr


def _workers(names: Names, broker: str, procs: int, threads: int = 8) -> WorkerGroup:
    argv = [PYTHON, "-m", "dramatiq", TASKS, "--processes", str(procs), "--threads", str(threads)]
    return WorkerGroup([argv], _env(names, broker, False), "dramatiq")


def _cleanup(names: Names) -> None:
    q = names.queue
    amqp_delete([q, f"{q}.DQ", f"{q}.XQ"])
    redis_cleanup(names.prefix)


def _fill(actor: Any, counter_key: str, n: int) -> None:
    for _ in range(n):
        actor.send(counter_key)


class Dramatiq(System):
    name = "dramatiq"
    scenarios = frozenset(
        {
            "send_confirm",
            "send_confirm_wait",
            "send_noconfirm",
            "drain_1x8",
            "drain_2x8",
            "drain_delayed_1x8",
            "latency",
            "latency_wait",
            "latency_noconfirm",
            "redis_drain_1x8",
            "redis_latency",
        }
    )
    packages = ("dramatiq", "pika", "redis")

    def _send(self, scenario: str, n: int, confirm: bool) -> dict[str, Any]:
        names = Names(self.name, scenario)
        actor = _actor(names, confirm=confirm)
        try:
            actor.send(names.counter_key)  # declares the queues outside the timing
            return measure_send(
                n,
                lambda _: actor.send(names.counter_key),
                "rabbitmq",
                lambda: {"queued": wait_queued(names.queue, n + 1) - 1},
            )
        finally:
            actor.broker.close()
            _cleanup(names)

    def scenario_send_confirm(self, n: int) -> dict[str, Any]:
        return self._send("send_confirm", n, confirm=True)

    def scenario_send_confirm_wait(self, n: int) -> dict[str, Any]:
        return self._send("send_confirm_wait", n, confirm=True)  # it waits for each

    def scenario_send_noconfirm(self, n: int) -> dict[str, Any]:
        return self._send("send_noconfirm", n, confirm=False)

    def _drain(self, scenario: str, n: int, broker: str, procs: int) -> dict[str, Any]:
        names = Names(self.name, scenario)
        actor = _actor(names, broker)
        plan = DrainPlan(
            start=lambda: _workers(names, broker, procs),
            ready_pattern=READY,
            ready_count=procs,
            fill=lambda k: _fill(actor, names.counter_key, k),
            counter_key=names.counter_key,
            broker=broker,
            amqp_queue=names.queue if broker == "rabbitmq" else None,
            consumers=procs,
        )
        try:
            return measure_drain(n, plan)
        finally:
            actor.broker.close()
            _cleanup(names)

    def scenario_drain_1x8(self, n: int) -> dict[str, Any]:
        return self._drain("drain_1x8", n, "rabbitmq", 1)

    def scenario_drain_2x8(self, n: int) -> dict[str, Any]:
        return self._drain("drain_2x8", n, "rabbitmq", 2)

    def scenario_redis_drain_1x8(self, n: int) -> dict[str, Any]:
        return self._drain("redis_drain_1x8", n, "redis", 1)

    def scenario_drain_delayed_1x8(self, n: int) -> dict[str, Any]:
        """Sent with delay=1 s (its default: no confirms); Dramatiq's worker holds delayed
        messages in its memory (the ``.DQ`` queue) and re-enqueues them when due."""
        names = Names(self.name, "drain_delayed_1x8")
        actor = _actor(names)

        def fill(k: int) -> None:
            for _ in range(k):
                actor.send_with_options(args=(names.counter_key,), delay=1000)

        plan = DrainPlan(
            start=lambda: _workers(names, "rabbitmq", 1),
            ready_pattern=READY,
            ready_count=1,
            fill=fill,
            counter_key=names.counter_key,
            broker="rabbitmq",
            amqp_queue=names.queue,
        )
        try:
            return measure_delayed(n, plan, 1.0)
        finally:
            actor.broker.close()
            _cleanup(names)

    def _latency(self, scenario: str, n: int, broker: str) -> dict[str, Any]:
        names = Names(self.name, scenario)
        actor = _actor(names, broker)
        plan = LatencyPlan(
            start=lambda: _workers(names, broker, 1),
            ready_pattern=READY,
            ready_count=1,
            send=lambda: actor.send(names.counter_key, names.notify_key),
            notify_key=names.notify_key,
            broker=broker,
            amqp_queue=names.queue if broker == "rabbitmq" else None,
        )
        try:
            return measure_latency(n, plan)
        finally:
            actor.broker.close()
            _cleanup(names)

    def scenario_latency(self, n: int) -> dict[str, Any]:
        return self._latency("latency", n, "rabbitmq")

    def scenario_latency_wait(self, n: int) -> dict[str, Any]:
        return self._latency("latency_wait", n, "rabbitmq")  # its default: no confirms

    def scenario_latency_noconfirm(self, n: int) -> dict[str, Any]:
        return self._latency("latency_noconfirm", n, "rabbitmq")

    def scenario_redis_latency(self, n: int) -> dict[str, Any]:
        return self._latency("redis_latency", n, "redis")


SYSTEM = Dramatiq()
