"""Time limits under load: runaway actors are stopped while other messages keep flowing."""

from __future__ import annotations

import time

import pytest

from actors.message import Message
from actors.testing import wait_until
from tests.faults.conftest import Target, WorkerFactory
from tests.faults.support import (
    assert_valid,
    dead_letter_ids,
    final_report,
    record_messages,
    send_counted,
    wait_for_quiescence,
)
from tests.support.fixtures import LedgerFactory

pytestmark = pytest.mark.faults

TIME_LIMIT = 3.0


def test_cpu_bound_and_hung_actors_are_stopped_while_others_keep_flowing(
    target: Target, ledger: LedgerFactory, worker_process: WorkerFactory
) -> None:
    # Given a worker (4 threads) running 2 endless CPU-bound sync actors and 3 hung async ones
    book = ledger()
    worker = worker_process(
        target.url, target.queue, book, threads=4, app="tests.faults.app_limits",
        env={"FAULT_TIME_LIMIT": str(TIME_LIMIT)},
    )  # fmt: skip
    runaways: list[Message[object]] = [
        Message(queue=target.queue, actor=actor, args=(key,), id=key)
        for actor, key in [("spin", "spin-0"), ("spin", "spin-1"),
                           ("hang", "hang-0"), ("hang", "hang-1"), ("hang", "hang-2")]
    ]  # fmt: skip
    send_counted(target.broker, runaways, book, batch=len(runaways))
    pid = worker.children()[0].pid

    # When 400 good messages arrive behind them
    good = record_messages(target.queue, "good", 400)
    send_counted(target.broker, good, book, batch=100)

    # Then good messages run while the runaways run (two threads stay free, though the spinning
    # ones take their share of the GIL), and the time limit stops each runaway: dead-lettered,
    # no retries, in the same process
    ran_meanwhile = 0
    deadline = time.monotonic() + TIME_LIMIT + 15
    while "spin-0" not in dead_letter_ids(target.broker, target.queue):
        assert time.monotonic() < deadline, "the CPU-bound actor was never stopped"
        ran_meanwhile = book.check().processed
        time.sleep(0.1)
    print(f"good messages run while the runaways ran: {ran_meanwhile} of {len(good)}")
    assert ran_meanwhile >= 20, f"only {ran_meanwhile} good messages ran meanwhile"
    letters = wait_until(
        lambda: len(found := target.broker.dead_letters(target.queue)) == len(runaways) and found,
        timeout=TIME_LIMIT + 15,
        message="the runaways dead-lettered",
    )
    assert [child.pid for child in worker.children()] == [pid], "the worker process was replaced"
    wait_for_quiescence(target.broker, target.queue, book, timeout=30)
    code, _ = worker.terminate()
    report = final_report(target.broker, target.queue, book, f"time limits ({target.kind})")
    assert code == 0
    assert_valid(report)
    assert report.duplicated == {}
    errors = {letter.message_id: letter.error for letter in letters}
    assert all("TimeLimitExceeded" in errors[f"spin-{n}"] for n in range(2)), errors
    assert all("CancelledError" in errors[f"hang-{n}"] for n in range(3)), errors
    assert {letter.reason for letter in letters} == {"max-retries"}
