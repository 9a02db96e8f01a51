"""Prometheus metrics of the worker, correct across several worker processes.

``actors worker --metrics-port N`` calls `prepare_multiprocess()` and `serve_metrics()` in the
supervisor: every worker process writes its metrics to files in ``PROMETHEUS_MULTIPROC_DIR``
(prometheus-client's multiprocess mode) and the supervisor serves their sum. A worker run
in-process (`actors.Worker`) can add `Prometheus` itself and serve its registry.
"""

from __future__ import annotations

import heapq
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from actors import registry
from actors.delivery import Outcome
from actors.errors import ConfigurationError
from actors.middleware.base import Middleware

if TYPE_CHECKING:
    from actors.broker import Broker
    from actors.delivery import Delivery, Failure
    from actors.message import Message
    from actors.worker import Worker

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise ConfigurationError(
            "metrics need the 'prometheus' extra: pip install 'actors-runtime[prometheus]'"
        ) from exc
    return prometheus_client


@dataclass(frozen=True, slots=True)
class _Series:
    """The metric children of one (queue, actor) pair, looked up once."""

    received: Any
    processed: Any
    failed: Any
    retried: Any
    dead_lettered: Any
    rejected: Any
    in_progress: Any
    duration: Any
    delayed: Any


class Prometheus(Middleware):
    """Counts messages per actor and queue for Prometheus.

    Metrics (labels ``queue``, ``actor``): ``actors_messages_received_total``,
    ``actors_messages_processed_total``, ``actors_messages_failed_total`` (runs that raised),
    ``actors_messages_retried_total``, ``actors_messages_dead_lettered_total``,
    ``actors_messages_rejected_by_limits_total`` (put back by rate limits),
    ``actors_messages_in_progress``, ``actors_message_duration_seconds`` (histogram) and
    ``actors_messages_delayed`` (put back with a delay by this process and not yet due).

    Not in the default stack: ``actors worker --metrics-port N`` adds it, or add it with
    ``broker.add_middleware(Prometheus())``. It declares no actor options.

    Args:
        registry: The prometheus-client registry to register on (default: the global one);
            pass a fresh ``CollectorRegistry()`` to keep two instances apart (tests).
        buckets: Duration histogram buckets, in seconds.
        clock: Monotonic seconds (default `time.perf_counter`).

    Raises:
        ConfigurationError: prometheus-client is not installed (the ``prometheus`` extra).
    """

    actor_options: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        *,
        registry: Any = None,
        buckets: tuple[float, ...] = DEFAULT_BUCKETS,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        client = _client()
        target = client.REGISTRY if registry is None else registry
        labels = ("queue", "actor")

        def counter(name: str, text: str) -> Any:
            return client.Counter(f"actors_messages_{name}", text, labels, registry=target)

        def gauge(name: str, text: str) -> Any:
            return client.Gauge(f"actors_messages_{name}", text, labels, registry=target,
                                multiprocess_mode="livesum")  # fmt: skip

        self._metrics = (
            counter("received", "Messages taken from a queue by a worker."),
            counter("processed", "Messages whose actor ran (successfully or not)."),
            counter("failed", "Actor runs that raised."),
            counter("retried", "Messages scheduled to run again after a failure."),
            counter("dead_lettered", "Messages moved to a dead-letter queue."),
            counter("rejected_by_limits", "Messages put back because of a rate limit."),
            gauge("in_progress", "Messages being processed now."),
            client.Histogram(
                "actors_message_duration_seconds",
                "Time an actor ran.",
                labels,
                registry=target,
                buckets=buckets,
            ),
            gauge("delayed", "Messages put back with a delay by this process, not yet due."),
        )
        self._clock = clock
        self._series: dict[tuple[str, str], _Series] = {}
        self._started: dict[Delivery, float] = {}
        self._delays = _DueTimes()

    def _of(self, queue: str, actor: str) -> _Series:
        series = self._series.get((queue, actor))
        if series is None:
            series = _Series(*(metric.labels(queue, actor) for metric in self._metrics))
            self._series[(queue, actor)] = series
        return series

    def _for(self, delivery: Delivery) -> _Series:
        message = delivery.message
        return self._of(delivery.queue, message.actor if message is not None else "?")

    # -- lifecycle ------------------------------------------------------------------------------

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        """Start the thread that lowers the delayed gauge when delays fall due."""
        self._delays.start()

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        """Stop that thread."""
        self._delays.stop()

    # -- hooks ----------------------------------------------------------------------------------

    def after_enqueue(self, broker: Broker, message: Message[Any], delay: float | None) -> None:
        """Count a message sent with a delay as delayed until it is due."""
        if delay:
            self._delays.add(self._of(message.queue, message.actor).delayed, delay)

    def before_process_message(self, broker: Broker, delivery: Delivery) -> None:
        """Count the message as received and in progress; start its clock."""
        series = self._for(delivery)
        series.received.inc()
        series.in_progress.inc()
        self._started[delivery] = self._clock()

    def after_skip_message(self, broker: Broker, delivery: Delivery) -> None:
        """Count a message that was not run (put back by limits, or dead-lettered)."""
        series = self._for(delivery)
        if self._started.pop(delivery, None) is None:
            series.received.inc()
        else:
            series.in_progress.dec()
        if delivery.outcome is Outcome.DEFER:
            series.rejected.inc()
            self._delays.add(series.delayed, delivery.delay)

    def after_process_message(
        self,
        broker: Broker,
        delivery: Delivery,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """Count the run, its duration and its failure."""
        series = self._for(delivery)
        started = self._started.pop(delivery, None)
        if started is not None:
            series.in_progress.dec()
            series.duration.observe(self._clock() - started)
        series.processed.inc()
        if exception is not None:
            series.failed.inc()

    def after_retry(self, broker: Broker, delivery: Delivery, delay: float) -> None:
        """Count a retry and its delay."""
        series = self._for(delivery)
        series.retried.inc()
        self._delays.add(series.delayed, delay)

    def after_dead_letter(self, broker: Broker, delivery: Delivery, failure: Failure) -> None:
        """Count a dead letter."""
        self._for(delivery).dead_lettered.inc()


class _DueTimes:
    """Raises a gauge for each delay and lowers it when the delay falls due, in one thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Any]] = []
        self._seq = 0
        self._running = False

    def add(self, gauge: Any, delay: float) -> None:
        gauge.inc()
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (time.monotonic() + delay, self._seq, gauge))
            self._cond.notify()

    def start(self) -> None:
        with self._cond:
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._run, name="actors-metrics-delays", daemon=True).start()

    def stop(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify_all()

    def _run(self) -> None:
        with self._cond:
            while self._running:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    heapq.heappop(self._heap)[2].dec()
                self._cond.wait(self._heap[0][0] - now if self._heap else None)


# -- multiprocess serving (the CLI supervisor) -----------------------------------------------


def prepare_multiprocess(directory: str | os.PathLike[str] | None = None) -> Callable[[], None]:
    """Switch this process tree to prometheus-client's multiprocess mode.

    Call it in the supervisor before starting worker processes: it sets
    ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temp dir unless `directory` or the variable names
    one; stale files in it are removed) and returns the function each worker process calls at
    boot, which adds `Prometheus` to the process broker.
    """
    path = Path(
        directory or os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="actors-metrics-")
    )
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)
    return _on_child_boot


def _on_child_boot() -> None:
    client = _client()
    from prometheus_client import multiprocess, values

    # the supervisor may have imported prometheus_client before the variable was set
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    _forget_dead_processes(multiprocess, Path(os.environ[MULTIPROC_ENV]))
    broker = registry.get_broker()
    if broker.get_middleware(Prometheus) is None:
        broker.add_middleware(Prometheus(registry=client.CollectorRegistry()))


def _forget_dead_processes(multiprocess: Any, path: Path) -> None:
    """Drop the live gauges of worker processes that died (in-progress, delayed)."""
    pids = {
        int(m[1]) for f in path.glob("gauge_live*.db") if (m := re.search(r"_(\d+)\.db$", f.name))
    }
    for pid in pids:
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, str(path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def serve_metrics(port: int, *, addr: str = "0.0.0.0", registry: Any = None) -> Any:
    """Serve metrics over HTTP on `port` from a background thread; return the server.

    In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set, see `prepare_multiprocess`) it
    serves the sum over every worker process; otherwise `registry` (default: the global one).

    Raises:
        ConfigurationError: prometheus-client is not installed.
    """
    client = _client()
    if registry is None and os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=os.environ[MULTIPROC_ENV])  # type: ignore[no-untyped-call]
    server, _thread = client.start_http_server(
        port, addr=addr, registry=registry or client.REGISTRY
    )
    return server
