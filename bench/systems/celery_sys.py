"""Celery 5.x: py-amqp transport (RabbitMQ) and the kombu Redis transport.

Workers: ``celery worker --pool threads --concurrency 8`` (1x8) and ``--pool prefork
--concurrency 2`` (2x8: Celery's way to use two processes), gossip/mingle/heartbeat,
events and remote control off, results ignored, log level WARNING.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import uuid
from typing import Any

from bench.common import (
    PYTHON,
    DrainPlan,
    LatencyPlan,
    Names,
    WorkerGroup,
    amqp_channel,
    amqp_delete,
    measure_drain,
    measure_latency,
    measure_send,
    redis_cleanup,
)
from bench.systems.base import System
from bench.systems.raw_pika import wait_queued

READY = "BENCH_READY"
TASKS = "bench.tasks.celery_tasks"


def _env(names: Names, broker: str, confirm: bool) -> dict[str, str]:
    return names.worker_env(BENCH_BROKER=broker, BENCH_CONFIRM="1" if confirm else "0")


def _task(names: Names, broker: str = "rabbitmq", confirm: bool = False) -> Any:
    """Import the Celery app in this process, configured like the workers."""
    os.environ.update(_env(names, broker, confirm))
    sys.modules.pop(TASKS, None)
    return importlib.import_module(TASKS).incr


def _workers(names: Names, broker: str, pool: str, concurrency: int) -> WorkerGroup:
    argv = [
        PYTHON, "-m", "celery", "-A", TASKS, "worker",
        "--pool", pool, "--concurrency", str(concurrency),
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--loglevel", "WARNING", "-Q", names.queue, "-n", f"bench-{names.token}@%h",
    ]  # fmt: skip
    return WorkerGroup([argv], _env(names, broker, False), "celery")


def _cleanup(names: Names) -> None:
    amqp_delete([names.queue], [names.queue])
    redis_cleanup(names.prefix)


def _close(task: Any) -> None:
    task.app.close()


def _template(task: Any, names: Names) -> tuple[Any, bytes]:
    """One message published by Celery itself (before any worker runs), fetched back."""
    task.apply_async((names.counter_key,))
    deadline = time.monotonic() + 10
    with amqp_channel() as ch:
        while time.monotonic() < deadline:
            method, props, body = ch.basic_get(names.queue, auto_ack=True)
            if method is not None:
                return props, body
            time.sleep(0.05)
    raise TimeoutError("the template message did not arrive")


def _replicate(queue: str, template: tuple[Any, bytes], n: int) -> None:
    """Fill the backlog fast with raw pika: Celery's own message, a new task id each.

    Celery's apply_async runs at ~1,500 msg/s here; the backlog is not what is measured.
    """
    import pika

    props, body = template
    with amqp_channel() as ch:
        for _ in range(n):
            tid = str(uuid.uuid4())
            headers = dict(props.headers, id=tid, root_id=tid)
            p = pika.BasicProperties(
                content_type=props.content_type,
                content_encoding=props.content_encoding,
                delivery_mode=props.delivery_mode,
                priority=props.priority,
                correlation_id=tid,
                reply_to=props.reply_to,
                headers=headers,
            )
            ch.basic_publish("", queue, body, p)
        ch.queue_declare(queue, passive=True)


class Celery(System):
    name = "celery"
    scenarios = frozenset(
        {"send_confirm", "send_noconfirm", "drain_1x8", "drain_2x8", "latency", "redis_latency"}
    )
    packages = ("celery", "kombu", "amqp", "redis")

    def _send(self, scenario: str, n: int, confirm: bool) -> dict[str, Any]:
        names = Names(self.name, scenario)
        task = _task(names, confirm=confirm)
        args = (names.counter_key,)
        try:
            task.apply_async(args)  # declares the queue outside the timing
            return measure_send(
                n,
                lambda _: task.apply_async(args),
                "rabbitmq",
                lambda: {"queued": wait_queued(names.queue, n + 1) - 1},
            )
        finally:
            _close(task)
            _cleanup(names)

    def scenario_send_confirm(self, n: int) -> dict[str, Any]:
        return self._send("send_confirm", n, confirm=True)

    def scenario_send_noconfirm(self, n: int) -> dict[str, Any]:
        return self._send("send_noconfirm", n, confirm=False)

    def _drain(self, scenario: str, n: int, pool: str, concurrency: int) -> dict[str, Any]:
        names = Names(self.name, scenario)
        task = _task(names)
        template = _template(task, names)

        def fill(k: int) -> None:
            _replicate(names.queue, template, k)

        plan = DrainPlan(
            start=lambda: _workers(names, "rabbitmq", pool, concurrency),
            ready_pattern=READY,
            ready_count=1,
            fill=fill,
            counter_key=names.counter_key,
            broker="rabbitmq",
            amqp_queue=names.queue,
            consumers=1,
        )
        try:
            return measure_drain(n, plan)
        finally:
            _close(task)
            _cleanup(names)

    def scenario_drain_1x8(self, n: int) -> dict[str, Any]:
        return self._drain("drain_1x8", n, "threads", 8)

    def scenario_drain_2x8(self, n: int) -> dict[str, Any]:
        return self._drain("drain_2x8", n, "prefork", 2)

    def _latency(self, scenario: str, n: int, broker: str) -> dict[str, Any]:
        names = Names(self.name, scenario)
        task = _task(names, broker)
        args = (names.counter_key, names.notify_key)
        plan = LatencyPlan(
            start=lambda: _workers(names, broker, "threads", 8),
            ready_pattern=READY,
            ready_count=1,
            send=lambda: task.apply_async(args),
            notify_key=names.notify_key,
            broker=broker,
            amqp_queue=names.queue if broker == "rabbitmq" else None,
        )
        try:
            return measure_latency(n, plan)
        finally:
            _close(task)
            _cleanup(names)

    def scenario_latency(self, n: int) -> dict[str, Any]:
        return self._latency("latency", n, "rabbitmq")

    def scenario_redis_latency(self, n: int) -> dict[str, Any]:
        return self._latency("redis_latency", n, "redis")


SYSTEM = Celery()
