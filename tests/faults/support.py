"""The fault suite's tools: real worker processes, counted sends, draining and reports.

Every fault test follows the same shape, after Jepsen's total-queue checker:

1. N messages with known ids (the id is also the actor's argument, see tests/faults/app.py);
2. each send recorded as ``ok`` / ``failed`` / ``unknown`` (an exception that leaves the outcome
   open, e.g. ``ConnectionFailed``), and an unknown send retried with the *same* message id,
   as the product promises it is safe to do;
3. the fault, against a real ``actors worker`` process (so SIGKILL and SIGTERM are real);
4. a bounded wait for quiescence, dead letters read back into the ledger, then ``check()``:
   ``lost`` and ``unexpected`` must be empty, duplicates are counted and reported.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

import psutil

from actors import prefetch as sizing
from actors.broker import Broker
from actors.errors import BrokerConnectionError, PublishError
from actors.message import Message
from actors.testing import wait_until
from tests.support.ledger import Ledger, LedgerReport, Outcome

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = "tests.faults.app"
READY_LINE = "worker consuming"

#: Ledger summaries of every fault test run in this session, shown at the end (conftest.py).
REPORTS: list[str] = []


class WorkerProcess:
    """``actors worker tests.faults.app`` in a process group of its own.

    Args:
        broker_url: ``--broker``.
        queue: The queue the app's actors use (``FAULT_QUEUE``).
        ledger: Where the actors record their runs (``FAULT_LEDGER``).
        log_path: The worker's stderr (its log) goes here.
        processes: ``-p``.
        threads: ``-t``.
        shutdown_timeout: ``--shutdown-timeout``.
        env: More ``FAULT_*`` settings (``FAULT_WORK_SECONDS``, ``FAULT_TIME_LIMIT``).
        app: The module of actors to run (default tests/faults/app.py).
    """

    def __init__(
        self,
        *,
        broker_url: str,
        queue: str,
        ledger: Ledger,
        log_path: Path,
        processes: int = 1,
        threads: int = 4,
        shutdown_timeout: float = 10.0,
        env: dict[str, str] | None = None,
        app: str = APP,
    ) -> None:
        self.app = app
        self.broker_url = broker_url
        self.processes = processes
        self.threads = threads
        self.shutdown_timeout = shutdown_timeout
        self.log_path = log_path
        self._env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ACTORS_")},
            "FAULT_QUEUE": queue,
            "FAULT_LEDGER": str(ledger.path),
            **(env or {}),
        }
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def prefetch(self) -> int:
        """Deliveries each child holds at most (the default prefetch when no actor is async).

        It starts at two per thread and grows with the rate; the actors here sleep
        ``FAULT_WORK_SECONDS`` each, which bounds the rate at `threads` / that. The bound is
        the size for twice that rate: room for a window in which the prefetch grew, and for
        a change during which the old and the new consumer both hold deliveries.
        """
        work = float(self._env.get("FAULT_WORK_SECONDS", "0"))
        sizer = sizing.PrefetchSizer(self.threads * 2)
        return sizer.cap if work <= 0 else sizer.size_for(2 * self.threads / work)

    def start(self, timeout: float = 30.0) -> Self:
        """Start the supervisor and wait until every child consumes."""
        command = [
            sys.executable, "-m", "actors", "worker", self.app,
            "-p", str(self.processes), "-t", str(self.threads),
            "--broker", self.broker_url, "--shutdown-timeout", str(self.shutdown_timeout),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready(self.processes, timeout)
        return self

    def wait_ready(self, consumers: int, timeout: float = 30.0) -> None:
        """Wait until the log shows `consumers` children consuming, counted since the start."""
        wait_until(
            lambda: self._alive_or_raise() and self.log().count(READY_LINE) >= consumers,
            timeout=timeout,
            interval=0.05,
            message=f"{consumers} consuming worker processes (log: {self.log_path})",
        )

    def children(self) -> list[psutil.Process]:
        """The live worker processes (children of the supervisor)."""
        assert self._process is not None
        try:
            children: list[psutil.Process] = psutil.Process(self._process.pid).children()
        except psutil.NoSuchProcess:
            return []
        return children

    def kill_child(self, index: int = 0, sig: signal.Signals = signal.SIGKILL) -> int:
        """Send `sig` to one worker process and return its pid (the supervisor replaces it)."""
        kids = wait_until(
            lambda: len(kids := self.children()) == self.processes and kids,
            timeout=30,
            message=f"{self.processes} worker processes",
        )
        victim = sorted(kids, key=lambda p: p.pid)[index % len(kids)]
        victim.send_signal(sig)
        return int(victim.pid)

    def terminate(self, timeout: float | None = None) -> tuple[int, float]:
        """SIGTERM the supervisor; return its exit code and how long it took to exit."""
        assert self._process is not None
        began = time.monotonic()
        self._process.send_signal(signal.SIGTERM)
        code = self._process.wait(self.shutdown_timeout + 20 if timeout is None else timeout)
        return code, time.monotonic() - began

    def stop(self) -> None:
        """Kill whatever is left of the process group (cleanup; a no-op after `terminate`)."""
        if self._process is None:
            return
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait(30)

    def log(self) -> str:
        """The worker's log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _alive_or_raise(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(f"worker exited {self._process.returncode}:\n{self.log()[-3000:]}")
        return True


def record_messages(queue: str, prefix: str, count: int, padding: int = 0) -> list[Message[Any]]:
    """`count` messages for the app's ``record`` actor; each id is its key (``prefix-00042``)."""
    pad = "x" * padding
    messages: list[Message[Any]] = []
    for index in range(count):
        key = f"{prefix}-{index:05d}"
        args: tuple[Any, ...] = (key, pad) if padding else (key,)
        messages.append(Message(queue=queue, actor="record", args=args, id=key))
    return messages


def send_counted(
    broker: Broker,
    messages: Sequence[Message[Any]],
    ledger: Ledger,
    *,
    batch: int = 1,
    give_up_after: float = 60.0,
    on_unknown: Callable[[], object] = lambda: None,
) -> int:
    """Send `messages` (one by one, or `batch` at a time) recording every outcome.

    A send that raises `BrokerConnectionError` is ``unknown`` and is sent again with the same
    ids until it is confirmed or `give_up_after` seconds passed. A single send refused with
    `PublishError` is ``failed``; a refused batch is ``unknown`` (others in it were confirmed).
    `on_unknown` is called after each unknown outcome, before the retry.

    Returns:
        How many send attempts ended with an unknown outcome (and were retried).
    """
    deadline = time.monotonic() + give_up_after
    unknown = 0
    for start in range(0, len(messages), batch):
        chunk = list(messages[start : start + batch])
        while True:
            outcome = _send_once(broker, chunk)
            ledger.record_sends((message.id, outcome) for message in chunk)
            if outcome != "unknown" or time.monotonic() >= deadline:
                break
            unknown += 1
            on_unknown()
    return unknown


def _send_once(broker: Broker, chunk: list[Message[Any]]) -> Outcome:
    try:
        if len(chunk) == 1:
            broker.enqueue(chunk[0])
        else:
            broker.enqueue_many(chunk)
    except BrokerConnectionError:
        return "unknown"
    except PublishError:
        return "failed" if len(chunk) == 1 else "unknown"
    return "ok"


class BackgroundSender:
    """Sends messages one at a time from a thread (with `send_counted`) until told to stop."""

    def __init__(self, broker: Broker, messages: Sequence[Message[Any]], ledger: Ledger) -> None:
        self.sent = 0
        self.unknown = 0
        #: Unknown outcomes so far, counted as they happen (`unknown` counts them per message).
        self.unknown_attempts = 0
        self._broker = broker
        self._messages = messages
        self._ledger = ledger
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fault-sender", daemon=True)

    def start(self) -> Self:
        """Start sending."""
        self._thread.start()
        return self

    def wait_for(self, more: int, timeout: float = 60.0) -> None:
        """Wait until `more` messages beyond the current count were sent."""
        target = self.sent + more
        wait_until(
            lambda: self._error is not None or self.sent >= target or not self._thread.is_alive(),
            timeout=timeout,
            message=f"{target} sends",
        )

    def stop(self, timeout: float = 60.0) -> None:
        """Stop after the send in progress; re-raise what the thread raised, if anything."""
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the sender did not stop"
        if self._error is not None:
            raise self._error

    def _saw_unknown(self) -> None:
        self.unknown_attempts += 1

    def _run(self) -> None:
        try:
            for message in self._messages:
                if self._stop.is_set():
                    return
                self.unknown += send_counted(
                    self._broker, [message], self._ledger, on_unknown=self._saw_unknown
                )
                self.sent += 1
        except BaseException as exc:  # handed to the test thread by stop()
            self._error = exc


def wait_for_runs(ledger: Ledger, count: int, timeout: float = 60.0) -> None:
    """Wait until `count` distinct ids have run."""
    wait_until(
        lambda: ledger.check().processed >= count, timeout=timeout, message=f"{count:.0f} runs"
    )


def dead_letter_ids(broker: Broker, queue: str) -> dict[str, str]:
    """Ids of the dead letters of `queue`, with their reasons."""
    return {letter.message_id: letter.reason for letter in broker.dead_letters(queue, limit=10_000)}


def wait_for_quiescence(broker: Broker, queue: str, ledger: Ledger, timeout: float) -> None:
    """Wait (bounded) until every ``ok`` id ran or was dead-lettered and `queue` is empty.

    Returns quietly at the deadline: the ledger's report then shows what is missing.
    """

    def quiet() -> bool:
        lost = set(ledger.check().lost)
        if lost:
            lost -= set(dead_letter_ids(broker, queue))
        return not lost and broker.queue_depth(queue) == 0

    with contextlib.suppress(TimeoutError):
        wait_until(quiet, timeout=timeout, interval=0.25, message="quiescence")


def final_report(broker: Broker, queue: str, ledger: Ledger, title: str) -> LedgerReport:
    """Read the dead letters into the ledger, check it, and keep its summary for the session."""
    for message_id, reason in dead_letter_ids(broker, queue).items():
        ledger.record_dead_lettered(message_id, reason)
    report = ledger.check()
    text = f"{title}: {extra_runs(report)} duplicate runs\n{report.summary()}"
    REPORTS.append(text)
    print(text)
    return report


def extra_runs(report: LedgerReport) -> int:
    """Runs beyond the first of every id."""
    return sum(count - 1 for count in report.duplicated.values())


def assert_valid(report: LedgerReport) -> None:
    """Nothing lost, nothing unexpected, no definitely failed send ran."""
    assert report.lost == frozenset(), report.summary()
    assert report.unexpected == frozenset(), report.summary()
    assert report.failed_but_processed == frozenset(), report.summary()
