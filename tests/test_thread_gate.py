"""The thread gate: fewer running threads while the GIL is the bottleneck, all while they wait."""

from __future__ import annotations

import threading

import pytest

import actors
from actors.brokers.memory import MemoryBroker
from actors.testing import wait_until
from actors.thread_gate import GIL_BOUND, UNDERUSED, WINDOW, ThreadGate


class FakeProcess:
    """A clock, a CPU counter and a backlog that tests set by hand."""

    def __init__(self) -> None:
        self.now = 100.0
        self.cpu_seconds = 5.0
        self.backlog = True

    def has_backlog(self) -> bool:
        return self.backlog

    def clock(self) -> float:
        return self.now

    def cpu(self) -> float:
        return self.cpu_seconds


def _gate(process: FakeProcess, threads: int = 8, **options: bool) -> ThreadGate:
    return ThreadGate(threads, process.has_backlog, clock=process.clock, cpu=process.cpu, **options)


def _window(gate: ThreadGate, process: FakeProcess, cores: float, *, backlog: bool) -> int:
    """One message finishes after a window in which the process used `cores`; the new limit."""
    process.backlog = backlog
    gate.enter()
    process.now += WINDOW
    process.cpu_seconds += cores * WINDOW
    gate.finished()
    gate.leave()
    return gate.limit


def test_a_process_bound_by_the_gil_runs_fewer_threads_down_to_the_floor() -> None:
    process = FakeProcess()
    gate = _gate(process)
    limits = [_window(gate, process, 1.0, backlog=True) for _ in range(6)]
    assert limits[0] < 8
    assert limits == sorted(limits, reverse=True)
    assert limits[-3:] == [2, 2, 2]


def test_actors_waiting_on_io_with_deliveries_queued_get_their_threads_back() -> None:
    process = FakeProcess()
    gate = _gate(process)
    while gate.limit > gate.floor:
        _window(gate, process, 1.0, backlog=True)
    limits = [_window(gate, process, 0.2, backlog=True) for _ in range(8)]
    assert limits == [3, 4, 5, 6, 7, 8, 8, 8]


@pytest.mark.parametrize(
    ("cores", "backlog"),
    [(0.2, False), ((UNDERUSED + GIL_BOUND[0]) / 2, True), (1.6, True)],
    ids=["idle-without-backlog", "between-the-thresholds", "more-than-one-core"],
)
def test_the_limit_stays_when_more_threads_would_not_help_and_fewer_might_hurt(
    cores: float, backlog: bool
) -> None:
    process = FakeProcess()
    gate = _gate(process)
    _window(gate, process, 1.0, backlog=True)
    before = gate.limit
    assert [_window(gate, process, cores, backlog=backlog) for _ in range(4)] == [before] * 4


def test_a_fixed_gate_never_moves() -> None:
    process = FakeProcess()
    gate = _gate(process, adaptive=False)
    assert [_window(gate, process, 1.0, backlog=True) for _ in range(4)] == [8] * 4


def test_threads_beyond_the_limit_wait_until_one_leaves_or_the_gate_opens() -> None:
    process = FakeProcess()
    gate = _gate(process, threads=3)
    while gate.limit > gate.floor:
        _window(gate, process, 1.0, backlog=True)
    gate.enter()
    gate.enter()
    admitted: list[int] = []

    def third(index: int) -> None:
        gate.enter()
        admitted.append(index)

    waiting = [threading.Thread(target=third, args=(i,), daemon=True) for i in range(2)]
    for thread in waiting:
        thread.start()
    wait_until(lambda: len(gate._cond._waiters) == 2, message="two threads parked")  # type: ignore[attr-defined]
    assert admitted == []

    gate.leave()  # one running thread finished: one parked thread takes its place
    wait_until(lambda: len(admitted) == 1, message="one admitted")
    gate.open()  # stopping: every thread must get through
    wait_until(lambda: len(admitted) == 2, message="both admitted")
    assert gate.active == 3


@pytest.mark.parametrize("narrowed", [False, True], ids=["wide", "narrowed"])
def test_actors_that_wait_on_each_other_all_run_at_once(narrowed: bool) -> None:
    # Given a worker whose gate may have narrowed to two running threads (as after a
    # GIL-bound backlog)
    broker = actors.set_broker(MemoryBroker())
    together = threading.Barrier(8, timeout=10)
    finished: list[int] = []

    @actors.actor
    def meet(index: int) -> None:
        together.wait()
        finished.append(index)

    worker = actors.Worker(broker, threads=8)
    if narrowed:
        worker._gate.limit = worker._gate.floor
    worker.start()
    try:
        # When eight actors that only finish together arrive, all eight threads must run:
        # once narrowed, the two running ones block, no thread leaves, and the idle process
        # lets the waiting threads in, one per window
        for index in range(8):
            meet.send(index)
        broker.join("default", timeout=15)
    finally:
        worker.stop()
    assert sorted(finished) == list(range(8))


def test_threads_on_long_messages_do_not_count_against_the_limit() -> None:
    # Given a gate narrowed to two running threads, both taken by messages that do not end
    process = FakeProcess()
    gate = _gate(process, threads=4)
    while gate.limit > gate.floor:
        _window(gate, process, 1.0, backlog=True)
    release = threading.Event()

    def long_message() -> None:
        gate.enter()
        gate.started()
        release.wait(10)
        gate.finished()
        gate.leave()

    runaways = [threading.Thread(target=long_message, daemon=True) for _ in range(2)]
    for thread in runaways:
        thread.start()
    wait_until(lambda: gate.active == 2, message="two long messages running")
    admitted = threading.Event()

    def short_message() -> None:
        gate.enter()
        admitted.set()

    waiting = threading.Thread(target=short_message, daemon=True)
    waiting.start()
    wait_until(lambda: len(gate._cond._waiters) == 1, message="a thread parked")  # type: ignore[attr-defined]
    assert not admitted.is_set()

    # When both have run for longer than a window, the parked thread is let in
    process.now += 2 * WINDOW
    wait_until(admitted.is_set, timeout=5, message="the short message admitted")
    release.set()
    for thread in runaways:
        thread.join(5)
    assert gate.active == 1
