"""Worker processes killed (SIGKILL) or stopped (SIGTERM) in the middle of a backlog.

These faults only touch our own worker processes, so they run on the shared RabbitMQ and Redis,
under queue names and key prefixes of their own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.testing import wait_until
from tests.faults.conftest import Target, WorkerFactory
from tests.faults.support import (
    assert_valid,
    extra_runs,
    final_report,
    record_messages,
    send_counted,
    wait_for_quiescence,
    wait_for_runs,
)
from tests.support.fixtures import LedgerFactory

pytestmark = pytest.mark.faults


def test_sigkill_mid_backlog_redelivers_the_in_flight_messages(
    target: Target, ledger: LedgerFactory, worker_process: WorkerFactory
) -> None:
    # Given a backlog of 1,000 messages and two worker processes working through it
    count = 1000
    book, starts = ledger(), ledger("starts")
    send_counted(target.broker, record_messages(target.queue, "kill", count), book, batch=100)
    worker = worker_process(
        target.url, target.queue, book, processes=2, threads=4,
        env={"FAULT_WORK_SECONDS": "0.02", "FAULT_STARTS": str(starts.path)},
    )  # fmt: skip

    # When a worker process is SIGKILLed three times while the backlog drains
    kills = 0
    for fraction in (0.15, 0.4, 0.65):
        wait_for_runs(book, int(fraction * count))
        assert book.check().processed < count, "the backlog drained before the kill"
        worker.kill_child(kills)
        kills += 1
    wait_for_quiescence(target.broker, target.queue, book, timeout=60)
    code, _ = worker.terminate()

    # Then every message ran (the supervisor replaced the dead process and the broker gave its
    # unacknowledged messages to a live one); only those in flight at a kill can run twice
    restarted = len(starts.check().duplicated)
    title = f"SIGKILL x{kills} ({target.kind}), {restarted} runs cut short and redelivered"
    report = final_report(target.broker, target.queue, book, title)
    assert code == 0
    assert_valid(report)
    assert report.sent_ok == count
    assert restarted >= 1, "no kill hit a message in flight: the test proved nothing"
    assert extra_runs(report) <= kills * worker.prefetch


@pytest.mark.parametrize(
    ("mode", "work_seconds", "shutdown_timeout"),
    [("finish", 1.0, 10.0), ("return", 4.0, 0.5)],
)
def test_sigterm_finishes_or_returns_in_flight_messages_and_exits_0(
    target: Target,
    ledger: LedgerFactory,
    worker_process: WorkerFactory,
    tmp_path: Path,
    mode: str,
    work_seconds: float,
    shutdown_timeout: float,
) -> None:
    # Given long messages in flight on every worker thread
    count, threads = 24, 4
    book, starts = ledger(), ledger("starts")
    send_counted(target.broker, record_messages(target.queue, "term", count), book, batch=count)
    worker = worker_process(
        target.url, target.queue, book, processes=1, threads=threads,
        shutdown_timeout=shutdown_timeout,
        env={"FAULT_WORK_SECONDS": str(work_seconds), "FAULT_STARTS": str(starts.path)},
    )  # fmt: skip
    wait_until(lambda: starts.check().processed >= threads, timeout=30, message="runs started")

    # When the worker gets SIGTERM
    code, took = worker.terminate()

    # Then it exits 0 within the shutdown timeout (plus the process teardown): in "finish" mode
    # the runs complete, in "return" mode they are abandoned and go back to the broker
    assert code == 0, worker.log()[-3000:]
    assert took <= shutdown_timeout + 5, f"exit took {took:.1f}s"
    finished_before = book.check().processed
    if mode == "finish":
        assert finished_before >= threads
    else:
        assert finished_before == 0

    # And a second worker runs the rest: nothing lost, nothing ran twice
    drain = worker_process(target.url, target.queue, book, processes=1, threads=threads)
    wait_for_quiescence(target.broker, target.queue, book, timeout=60)
    assert drain.terminate()[0] == 0
    report = final_report(target.broker, target.queue, book, f"SIGTERM {mode} ({target.kind})")
    assert_valid(report)
    assert report.sent_ok == count
    assert report.duplicated == {}, "a graceful shutdown must not make a message run twice"
