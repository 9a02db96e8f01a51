"""Worker memory against a deep backlog: shared by tests/faults/test_memory.py (scaled down)
and bench/memory_bounds.py (200,000 queued and 100,000 delayed messages).

The measurement: a first worker process drains a warm-up batch and its RSS is taken (the
*warm* RSS: code paths, connections and caches in place). Then the queue is filled with
`queued` ready messages and `delayed` messages an hour away, and a second, fresh worker process
drains the ready ones while its RSS is sampled every 50 ms (the *peak*). A worker that holds
no more than its prefetch keeps ``peak - warm`` flat whatever the depth of the queue.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from actors.broker import Broker
from actors.brokers.rabbitmq import RabbitmqBroker
from actors.message import Message
from tests.faults.support import WorkerProcess, record_messages
from tests.support.ledger import Ledger

WARM_UP = 1000
DELAY = 3600.0
BATCH = 1000
MiB = 1024 * 1024


@dataclass(frozen=True)
class MemoryRun:
    """What one measurement found (RSS in bytes, durations in seconds)."""

    queued: int
    delayed: int
    warm_rss: int
    peak_rss: int
    fill_seconds: float
    drain_seconds: float
    processed: int

    @property
    def growth(self) -> int:
        """Peak RSS while draining the deep queue, minus the warm RSS."""
        return self.peak_rss - self.warm_rss

    def describe(self) -> str:
        """One line for reports."""
        return (
            f"{self.queued:,} queued + {self.delayed:,} delayed: worker RSS warm "
            f"{self.warm_rss / MiB:.1f} MiB, peak {self.peak_rss / MiB:.1f} MiB "
            f"(+{self.growth / MiB:.1f} MiB); filled in {self.fill_seconds:.1f}s, "
            f"drained {self.processed:,} in {self.drain_seconds:.1f}s"
        )


def measure(
    broker: Broker,
    worker_url: str,
    queue: str,
    workdir: Path,
    *,
    queued: int,
    delayed: int,
    timeout: float,
) -> MemoryRun:
    """Run the measurement described in the module docstring (workers: 1 process, 8 threads)."""
    book = Ledger(workdir / "memory-ledger.sqlite3")
    try:
        warm_rss = _warm_rss(broker, worker_url, queue, book, workdir)
        began = time.monotonic()
        _fill(broker, queue, queued, delayed)
        fill_seconds = time.monotonic() - began
        worker = _worker(worker_url, queue, book, workdir, "drain")
        try:
            peak, took = _sample_until_drained(worker, book, WARM_UP + queued, timeout)
            worker.terminate()
        finally:
            worker.stop()
        processed = book.check().processed - WARM_UP
    finally:
        book.close()
    return MemoryRun(queued, delayed, warm_rss, peak, fill_seconds, took, processed)


def _worker(url: str, queue: str, book: Ledger, workdir: Path, name: str) -> WorkerProcess:
    log = workdir / f"memory-{name}.log"
    return WorkerProcess(broker_url=url, queue=queue, ledger=book, log_path=log, threads=8).start()


def _warm_rss(broker: Broker, url: str, queue: str, book: Ledger, workdir: Path) -> int:
    worker = _worker(url, queue, book, workdir, "warm")
    try:
        _enqueue_batches(broker, record_messages(queue, "warm", WARM_UP))
        try:
            _wait_processed(book, WARM_UP, timeout=60)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; worker log:\n{worker.log()[-3000:]}") from None
        rss = _child_rss(worker)
        worker.terminate()
    finally:
        worker.stop()
    return rss


def _fill(broker: Broker, queue: str, queued: int, delayed: int) -> None:
    _enqueue_batches(broker, record_messages(queue, "ready", queued))
    later: list[Message[Any]] = [
        Message(queue=queue, actor="record", args=(f"later-{n:06d}",), id=f"later-{n:06d}")
        for n in range(delayed)
    ]
    if isinstance(broker, RabbitmqBroker):
        _enqueue_delayed_rabbitmq(broker, later)
    else:
        for message in later:
            broker.enqueue(message, delay=DELAY)


def _enqueue_batches(broker: Broker, messages: list[Message[Any]]) -> None:
    for start in range(0, len(messages), BATCH):
        broker.enqueue_many(messages[start : start + BATCH])


def _enqueue_delayed_rabbitmq(broker: RabbitmqBroker, messages: list[Message[Any]]) -> None:
    """Publish delayed messages with pipelined confirms: `enqueue(delay=)` confirms one at a
    time (~700/s here), too slow for 100,000. Uses the broker's own routing into its ladder."""
    for start in range(0, len(messages), BATCH):
        batch = messages[start : start + BATCH]
        outgoing = [broker._outgoing(broker.codec.pack(m), DELAY) for m in batch]
        broker._producer.publish(outgoing)


def _wait_processed(book: Ledger, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while book.check().processed < count:
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{book.check().processed} of {count} processed after {timeout}s")
        time.sleep(0.2)


def _child_rss(worker: WorkerProcess) -> int:
    return sum(int(child.memory_info().rss) for child in worker.children())


def _sample_until_drained(
    worker: WorkerProcess, book: Ledger, count: int, timeout: float
) -> tuple[int, float]:
    """Sample the worker's RSS every 50 ms until `count` runs are in the ledger."""
    began = time.monotonic()
    peak, checked = 0, 0.0
    while True:
        with contextlib.suppress(psutil.NoSuchProcess):
            peak = max(peak, _child_rss(worker))
        now = time.monotonic()
        if now - checked >= 1.0:
            checked = now
            if book.check().processed >= count:
                return peak, now - began
        if now - began >= timeout:
            raise TimeoutError(f"{book.check().processed} of {count} processed after {timeout}s")
        time.sleep(0.05)
