"""Prometheus metrics: counted per actor and queue, scraped over HTTP, summed over processes."""

from __future__ import annotations

import multiprocessing
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import actors
from actors.broker import Broker
from actors.brokers.memory import MemoryBroker
from actors.middleware.prometheus import (
    MULTIPROC_ENV,
    Prometheus,
    prepare_multiprocess,
    serve_metrics,
)
from actors.testing import running_worker, wait_until


def scrape(port: int) -> dict[str, float]:
    """Fetch the metrics page and return ``{"name{labels}": value}`` for actors_* series."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        found = re.match(r"^(actors_\S+?)(\{[^}]*\})? (\S+)$", line)
        if found:
            labels = ",".join(sorted(re.findall(r'(\w+="[^"]*")', found[2] or "")))
            samples[f"{found[1]}{{{labels}}}"] = float(found[3])
    return samples


def test_metrics_count_messages_per_actor_and_queue(
    broker: Broker,
    namespace: str,
    start_worker: Callable[..., actors.Worker],
    cleanups: Callable[[Callable[[], object]], None],
) -> None:
    registry = CollectorRegistry()
    broker.add_middleware(Prometheus(registry=registry))
    server = serve_metrics(0, addr="127.0.0.1", registry=registry)
    cleanups(server.server_close)
    cleanups(server.shutdown)

    @actors.actor(queue=namespace)
    def ok() -> None: ...

    @actors.actor(queue=namespace, max_retries=1, min_backoff=0.01)
    def broken() -> None:
        raise ValueError("boom")

    start_worker()
    for _ in range(3):
        ok.send()
    broken.send()
    broker.join(namespace, timeout=10)
    labels = f'actor="{{}}",queue="{namespace}"'
    ok_labels, broken_labels = labels.format("ok"), labels.format("broken")

    def settled() -> dict[str, float] | None:
        metrics = scrape(server.server_port)
        done = metrics.get(f"actors_messages_dead_lettered_total{{{broken_labels}}}") == 1
        return metrics if done else None

    metrics = wait_until(settled, timeout=10, message="dead letter counted")
    assert metrics[f"actors_messages_received_total{{{ok_labels}}}"] == 3
    assert metrics[f"actors_messages_processed_total{{{ok_labels}}}"] == 3
    assert metrics[f"actors_message_duration_seconds_count{{{ok_labels}}}"] == 3
    assert metrics[f"actors_messages_in_progress{{{ok_labels}}}"] == 0
    assert metrics[f"actors_messages_failed_total{{{broken_labels}}}"] == 2
    assert metrics[f"actors_messages_retried_total{{{broken_labels}}}"] == 1
    assert metrics[f"actors_messages_failed_total{{{ok_labels}}}"] == 0


def test_limit_rejections_and_delays_are_counted(namespace: str) -> None:
    registry = CollectorRegistry()
    broker = actors.set_broker(MemoryBroker())
    prometheus = Prometheus(registry=registry)
    broker.add_middleware(prometheus)

    @actors.actor(queue=namespace, rate_limit="1/m")
    def rare() -> None: ...

    with running_worker(broker, threads=2):
        rare.send()
        rare.send()
        labels = {"queue": namespace, "actor": "rare"}
        wait_until(
            lambda: registry.get_sample_value("actors_messages_rejected_by_limits_total", labels),
            timeout=10,
            message="a rejection counted",
        )
        assert registry.get_sample_value("actors_messages_delayed", labels) == 1


def _metrics_child(on_boot: Callable[[], None], queue: str, count: int) -> None:
    broker = actors.set_broker(MemoryBroker())
    on_boot()

    @actors.actor(queue=queue)
    def work() -> None: ...

    for _ in range(count):
        work.send()
    worker = actors.Worker(broker, threads=2)
    worker.start()
    broker.join(queue, timeout=30)
    worker.stop(timeout=5)


def test_the_supervisor_serves_the_sum_over_worker_processes(
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cleanups: Callable[[Callable[[], object]], None],
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))  # restored after the test
    on_boot = prepare_multiprocess(tmp_path)
    server = serve_metrics(0, addr="127.0.0.1")
    cleanups(server.server_close)
    cleanups(server.shutdown)
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=_metrics_child, args=(on_boot, namespace, n)) for n in (5, 7)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    assert [child.exitcode for child in children] == [0, 0]
    metrics = scrape(server.server_port)
    labels = f'actor="work",queue="{namespace}"'
    assert metrics[f"actors_messages_processed_total{{{labels}}}"] == 12
    assert metrics[f"actors_messages_in_progress{{{labels}}}"] == 0
