"""Shared plumbing for benchmark runners: names, broker helpers, worker processes, measurement.

Everything here imports only the standard library, psutil and (lazily) pika / redis, so the
orchestrator can import it without pulling in the systems under test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "15"))
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"

#: set by bench.run for its children, so it can find and delete what a crashed child left
RUN_ID = os.environ.get("BENCH_RUN_ID") or uuid.uuid4().hex[:6]

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

POLL_S = 0.05  # how often the drain loop polls the Redis counter (and samples RSS)
MB = 1024 * 1024


def log(*parts: object) -> None:
    """Diagnostics go to stderr; stdout is reserved for the JSON result."""
    print(*parts, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Names


@dataclass(frozen=True)
class Names:
    """Unique names for one scenario run: queue, Redis keys, namespaces."""

    system: str
    scenario: str
    token: str = field(default_factory=lambda: f"{RUN_ID}-{uuid.uuid4().hex[:6]}")

    @property
    def prefix(self) -> str:
        return f"bench.{self.system}.{self.scenario}.{self.token}"

    @property
    def queue(self) -> str:
        return self.prefix

    @property
    def counter_key(self) -> str:
        return f"{self.prefix}:count"

    @property
    def notify_key(self) -> str:
        return f"{self.prefix}:done"

    def worker_env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            BENCH_QUEUE=self.queue,
            BENCH_PREFIX=self.prefix,
            BENCH_COUNTER_KEY=self.counter_key,
            BENCH_AMQP_URL=AMQP_URL,
            BENCH_REDIS_URL=REDIS_URL,
            PYTHONPATH=str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env


# --------------------------------------------------------------------------------------------
# Redis


def redis_client() -> Any:
    import redis

    return redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)


def redis_cleanup(prefix: str) -> int:
    """Delete every key of db REDIS_DB that starts with ``prefix``; returns how many."""
    r = redis_client()
    deleted = 0
    try:
        batch = list(r.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(batch), 500):
            deleted += r.delete(*batch[i : i + 500])
    finally:
        r.close()
    return deleted


def redis_info() -> dict[str, Any]:
    r = redis_client()
    try:
        return dict(r.info("server"))
    finally:
        r.close()


# --------------------------------------------------------------------------------------------
# RabbitMQ


@contextlib.contextmanager
def amqp_channel() -> Iterator[Any]:
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        yield conn.channel()
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def amqp_declare(*queues: str) -> None:
    with amqp_channel() as ch:
        for q in queues:
            ch.queue_declare(q, durable=True)


def amqp_queue_state(queue: str) -> tuple[int, int]:
    """(ready messages, consumers) of an existing queue."""
    with amqp_channel() as ch:
        ok = ch.queue_declare(queue, passive=True)
        return ok.method.message_count, ok.method.consumer_count


def amqp_delete(queues: Iterable[str] = (), exchanges: Iterable[str] = ()) -> None:
    """Delete queues/exchanges; ignores ones that do not exist."""
    import pika

    for kind, names in (("queue", queues), ("exchange", exchanges)):
        for name in names:
            try:
                with amqp_channel() as ch:
                    if kind == "queue":
                        ch.queue_delete(name)
                    else:
                        ch.exchange_delete(name)
            except pika.exceptions.AMQPError as exc:  # already gone
                log(f"cleanup: {kind} {name}: {exc!r}")


def amqp_server_properties() -> dict[str, str]:
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        props = conn._impl.server_properties or {}
        return {
            k: (v.decode() if isinstance(v, bytes) else str(v))
            for k, v in props.items()
            if k in ("product", "version", "platform")
        }
    finally:
        conn.close()


def wait_consumers(queue: str, expected: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    consumers = 0
    while time.monotonic() < deadline:
        try:
            _, consumers = amqp_queue_state(queue)
        except Exception as exc:  # 404 until the worker has declared it
            if "NOT_FOUND" not in str(exc):
                raise
        if consumers >= expected:
            return consumers
        time.sleep(0.1)
    log(f"warning: {queue} has {consumers} consumers, expected {expected}")
    return consumers


# --------------------------------------------------------------------------------------------
# Processes


BROKER_PORTS = {"rabbitmq": 5672, "redis": REDIS_PORT}
_broker_pids: dict[str, int | None] = {}


def broker_process(kind: str) -> psutil.Process | None:
    """The shared RabbitMQ or Redis server process (the one listening on 127.0.0.1 at its
    port: other sessions may run private brokers), to charge its CPU per message."""
    if kind not in _broker_pids:
        port = BROKER_PORTS[kind]
        _broker_pids[kind] = next(
            (
                c.pid
                for c in psutil.net_connections("tcp")
                if c.status == psutil.CONN_LISTEN
                and c.laddr.port == port
                and c.laddr.ip == "127.0.0.1"
            ),
            None,
        )
    pid = _broker_pids[kind]
    try:
        return psutil.Process(pid) if pid else None
    except psutil.Error:
        return None


def cpu_seconds(procs: Iterable[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def machine_busy_seconds() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)


class CpuWindow:
    """CPU used during a measurement window, split by who used it.

    ``other_busy_pct`` is what the rest of the machine used meanwhile (other sessions' tests,
    background jobs): a noise indicator, in % of one core.
    """

    def __init__(self, broker: str, workers: list[psutil.Process] | None = None) -> None:
        self.workers = workers or []
        self.broker = broker_process(broker)
        self.me = psutil.Process()
        self.t0 = time.perf_counter()
        self.c0 = time.process_time()
        self.m0 = machine_busy_seconds()
        self.w0 = cpu_seconds(self.workers)
        self.b0 = cpu_seconds([self.broker]) if self.broker else 0.0
        self.s0 = cpu_seconds([self.me])

    def restart_clock(self) -> None:
        """Start the wall clock (and the client CPU) here; the rest started at creation."""
        self.t0 = time.perf_counter()
        self.c0 = time.process_time()

    def client_cpu(self) -> float:
        return time.process_time() - self.c0

    def stop(self, done: int, elapsed: float | None = None) -> dict[str, Any]:
        if elapsed is None:
            elapsed = time.perf_counter() - self.t0
        window = time.perf_counter() - self.t0
        worker = cpu_seconds(self.workers) - self.w0
        broker = cpu_seconds([self.broker]) - self.b0 if self.broker else None
        me = cpu_seconds([self.me]) - self.s0
        busy = machine_busy_seconds() - self.m0
        other = busy - worker - (broker or 0.0) - me
        done = max(done, 1)
        out: dict[str, Any] = {
            "broker_cpu_us": broker / done * 1e6 if broker is not None else None,
            "machine_busy_pct": busy / window * 100,
            "other_busy_pct": max(other, 0.0) / window * 100,
        }
        if self.workers:
            out["worker_cpu_us"] = worker / done * 1e6
        return out


class WorkerGroup:
    """One or more worker commands started as their own sessions, with their output watched.

    Output (stdout+stderr merged) is copied to our stderr with a prefix and scanned for a
    readiness marker. Stop is SIGTERM to each main process, bounded wait, then SIGKILL to the
    whole session.
    """

    def __init__(self, argvs: list[list[str]], env: dict[str, str], label: str) -> None:
        self.label = label
        self.started = time.perf_counter()
        self.lines: deque[str] = deque(maxlen=200)
        self._lock = threading.Lock()
        self._ready_pattern = ""
        self._ready_hits = 0
        self.popens: list[subprocess.Popen[str]] = []
        for argv in argvs:
            p = subprocess.Popen(
                argv,
                env=env,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            self.popens.append(p)
            threading.Thread(target=self._pump, args=(p,), daemon=True).start()

    def _pump(self, p: subprocess.Popen[str]) -> None:
        assert p.stdout is not None
        for line in p.stdout:
            line = line.rstrip("\n")
            with self._lock:
                self.lines.append(line)
                if self._ready_pattern and self._ready_pattern in line:
                    self._ready_hits += 1
            log(f"[{self.label} {p.pid} +{time.perf_counter() - self.started:.2f}s] {line}")

    def wait_ready(self, pattern: str, count: int, timeout: float = 60.0) -> float:
        """Wait until ``pattern`` was printed ``count`` times; returns seconds since spawn."""
        with self._lock:
            self._ready_pattern = pattern
            self._ready_hits = sum(pattern in line for line in self.lines)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._ready_hits >= count:
                    return time.perf_counter() - self.started
            dead = [p for p in self.popens if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{self.label}: worker exited with {dead[0].returncode}")
            time.sleep(0.02)
        raise TimeoutError(f"{self.label}: not ready after {timeout}s ({self._ready_hits}/{count})")

    def processes(self) -> list[psutil.Process]:
        procs: list[psutil.Process] = []
        for p in self.popens:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(p.pid)
                procs.append(root)
                procs.extend(root.children(recursive=True))
        return procs

    def rss_mb(self, procs: list[psutil.Process]) -> list[float]:
        out = []
        for p in procs:
            try:
                out.append(p.memory_info().rss / MB)
            except psutil.Error:
                out.append(0.0)
        return out

    def pause(self, procs: list[psutil.Process]) -> None:
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.suspend()

    def resume(self, procs: list[psutil.Process]) -> None:
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.resume()

    def stop(self, timeout: float = 15.0) -> None:
        t0 = time.perf_counter()
        procs = self.processes()
        self.resume(procs)  # a stopped process cannot handle SIGTERM
        for p in self.popens:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.popens:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{self.label}: {p.pid} ignored SIGTERM for {timeout}s, killing")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
        for p in procs:  # orphans (children of a killed parent)
            with contextlib.suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    p.kill()
        log(f"{self.label}: stopped in {time.perf_counter() - t0:.2f}s")


# --------------------------------------------------------------------------------------------
# Measurement flows


def measure_send(
    n: int,
    publish: Callable[[int], None],
    broker: str,
    after: Callable[[], dict[str, Any]] | None = None,
    finish: Callable[[], object] | None = None,
) -> dict[str, Any]:
    """Time ``publish(i)`` for i in range(n) from this thread, then ``finish()`` if given.

    ``finish`` (e.g. wait for the confirms still out) runs on the clock. ``after`` (e.g. wait
    until the queue holds n) runs once the clock has stopped and before the broker's CPU is
    read, so the broker's work on the last messages is charged.
    """
    cpu = CpuWindow(broker)
    cpu.restart_clock()
    for i in range(n):
        publish(i)
    if finish is not None:
        finish()
    elapsed = time.perf_counter() - cpu.t0
    client_cpu = cpu.client_cpu()
    extra = after() if after else {}
    return send_result(n, elapsed, client_cpu, cpu) | extra


def send_result(n: int, elapsed: float, client_cpu: float, cpu: CpuWindow) -> dict[str, Any]:
    return {
        "value": n / elapsed,
        "unit": "msg/s",
        "n": n,
        "seconds": elapsed,
        "client_cpu_us": client_cpu / n * 1e6,
    } | cpu.stop(n, elapsed)


@dataclass
class DrainPlan:
    """How a system runs a drain: start its workers, tell when ready, fill the backlog."""

    start: Callable[[], WorkerGroup]
    ready_pattern: str
    ready_count: int
    fill: Callable[[int], None]
    counter_key: str
    broker: str  # "rabbitmq" or "redis"
    amqp_queue: str | None = None  # wait for consumers on it before measuring idle RSS
    consumers: int = 1
    settle_s: float = 1.0


def measure_drain(n: int, plan: DrainPlan) -> dict[str, Any]:
    """Start workers on an empty queue, sample idle RSS, suspend them, fill ``n`` messages,
    resume, then poll the Redis counter every 50 ms until it reaches ``n`` (with a deadline).

    The rate is n / (time from resume until the counter reads n): a warm worker draining a
    pre-filled backlog. ``startup_s`` (spawn -> ready) is reported next to it.
    """
    r = redis_client()
    group = plan.start()
    try:
        startup = group.wait_ready(plan.ready_pattern, plan.ready_count)
        if plan.amqp_queue:
            wait_consumers(plan.amqp_queue, plan.consumers)
            startup = time.perf_counter() - group.started
        time.sleep(plan.settle_s)
        procs = group.processes()
        roles = [" ".join(p.cmdline()[:4])[-60:] for p in procs]
        rss_idle = group.rss_mb(procs)
        group.pause(procs)
        t_fill = time.perf_counter()
        plan.fill(n)
        fill_s = time.perf_counter() - t_fill
        return _drain_loop(n, plan, r, group, procs) | {
            "startup_s": startup,
            "fill_s": fill_s,
            "fill_rate": n / fill_s,
            "rss_idle_mb": rss_idle,
            "processes": roles,
        }
    finally:
        group.stop()
        r.close()


def _drain_loop(
    n: int, plan: DrainPlan, r: Any, group: WorkerGroup, procs: list[psutil.Process]
) -> dict[str, Any]:
    peak = group.rss_mb(procs)
    deadline_s = max(60.0, n / 100.0)
    cpu = CpuWindow(plan.broker, procs)
    group.resume(procs)
    count = 0
    while True:
        time.sleep(POLL_S)
        count = int(r.get(plan.counter_key) or 0)
        peak = [max(a, b) for a, b in zip(peak, group.rss_mb(procs), strict=True)]
        elapsed = time.perf_counter() - cpu.t0
        if count >= n or elapsed > deadline_s:
            break
    out: dict[str, Any] = {
        "value": count / elapsed,
        "unit": "msg/s",
        "n": n,
        "seconds": elapsed,
        "counter": count,
        "rss_peak_mb": peak,
    } | cpu.stop(count, elapsed)
    if count < n:
        out["error"] = f"deadline: counter {count}/{n} after {elapsed:.1f}s"
    return out


def measure_delayed(n: int, plan: DrainPlan, delay: float) -> dict[str, Any]:
    """Delayed-message throughput: running (not suspended) workers, ``plan.fill(n)`` publishes
    n messages each due ``delay`` seconds after its publish, then poll the counter until n.

    msg/s = n / (first message due -> counter reads n): how fast due messages get run, with
    the broker (or the worker, for systems that hold delays in memory) releasing them.
    ``late_s`` is how long after the last message was due the last one ran.
    """
    r = redis_client()
    group = plan.start()
    try:
        startup = group.wait_ready(plan.ready_pattern, plan.ready_count)
        if plan.amqp_queue:
            wait_consumers(plan.amqp_queue, plan.consumers)
        time.sleep(plan.settle_s)
        procs = group.processes()
        rss_idle = group.rss_mb(procs)
        peak = list(rss_idle)
        cpu = CpuWindow(plan.broker, procs)
        t0 = time.perf_counter()
        plan.fill(n)
        fill_s = time.perf_counter() - t0
        deadline_s = max(60.0, n / 100.0) + delay + fill_s
        count = 0
        while True:
            time.sleep(POLL_S)
            count = int(r.get(plan.counter_key) or 0)
            peak = [max(a, b) for a, b in zip(peak, group.rss_mb(procs), strict=True)]
            elapsed = time.perf_counter() - t0
            if count >= n or elapsed > deadline_s:
                break
        out: dict[str, Any] = {
            "value": count / max(elapsed - delay, 1e-3),
            "unit": "msg/s",
            "n": n,
            "delay_s": delay,
            "seconds": elapsed,
            "late_s": elapsed - fill_s - delay,
            "counter": count,
            "startup_s": startup,
            "fill_s": fill_s,
            "fill_rate": n / fill_s,
            "rss_idle_mb": rss_idle,
            "rss_peak_mb": peak,
            "processes": [" ".join(p.cmdline()[:4])[-60:] for p in procs],
        } | cpu.stop(count, elapsed)
        if count < n:
            out["error"] = f"deadline: counter {count}/{n} after {elapsed:.1f}s"
        return out
    finally:
        group.stop()
        r.close()


@dataclass
class LatencyPlan:
    start: Callable[[], WorkerGroup]
    ready_pattern: str
    ready_count: int
    send: Callable[[], None]  # publish one message whose task INCRs and RPUSHes notify_key
    notify_key: str
    broker: str  # "rabbitmq" or "redis"
    amqp_queue: str | None = None
    consumers: int = 1
    settle_s: float = 1.0
    warmup: int = 20


def measure_latency(n: int, plan: LatencyPlan) -> dict[str, Any]:
    """Sequential round trips: send one message, BLPOP the list its task pushes to."""
    r = redis_client()
    group = plan.start()
    try:
        startup = group.wait_ready(plan.ready_pattern, plan.ready_count)
        if plan.amqp_queue:
            wait_consumers(plan.amqp_queue, plan.consumers)
        time.sleep(plan.settle_s)
        samples: list[float] = []
        lost = 0
        cpu = CpuWindow(plan.broker, group.processes())
        for i in range(plan.warmup + n):
            t0 = time.perf_counter()
            plan.send()
            got = r.blpop([plan.notify_key], timeout=10)
            dt = (time.perf_counter() - t0) * 1000.0
            if got is None:
                lost += 1
                continue
            if i >= plan.warmup:
                samples.append(dt)
        res = latency_result(samples) | cpu.stop(plan.warmup + n)
        res.update(startup_s=startup, n=n, lost=lost)
        return res
    finally:
        group.stop()
        r.close()


def percentile(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    k = (len(sorted_vals) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def latency_result(samples: list[float]) -> dict[str, Any]:
    s = sorted(samples)
    return {
        "value": percentile(s, 0.50),
        "unit": "ms",
        "p50": percentile(s, 0.50),
        "p95": percentile(s, 0.95),
        "p99": percentile(s, 0.99),
        "mean": statistics.fmean(s) if s else float("nan"),
        "max": s[-1] if s else float("nan"),
    }
