"""A delivery ledger kept outside the system under test, checked like Jepsen's total-queue.

Producers record each send with its outcome as the client saw it: ``ok`` (confirmed), ``failed``
(definitely not enqueued) or ``unknown`` (e.g. the connection died before the confirm). Actors
record every run, dead-letter handlers every dead-lettered message. After draining to quiescence,
``check()`` reports:

* ``lost``: ids sent ``ok`` that were never processed nor dead-lettered (must be empty);
* ``recovered``: ids sent ``unknown`` (never ``ok``) that were processed;
* ``unexpected``: ids processed that were never sent at all (must be empty);
* ``failed_but_processed``: ids whose every send was ``failed`` and that ran anyway (a send that
  reported a definite failure lied; must be empty);
* ``duplicated``: id -> number of runs, for ids that ran more than once (count and bound it).

An id sent several times (a retry with the same message id) counts by its best outcome:
``ok`` over ``unknown`` over ``failed``.

Storage is SQLite in WAL mode with a busy timeout, so threads and processes (forked or not) can
write the same file at once; each write is one short ``BEGIN IMMEDIATE`` transaction and the bulk
methods use ``executemany``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Outcome = Literal["ok", "failed", "unknown"]
OUTCOMES: frozenset[str] = frozenset({"ok", "failed", "unknown"})
_RANK = {"failed": 0, "unknown": 1, "ok": 2}
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sends (id TEXT NOT NULL, outcome TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS runs (id TEXT NOT NULL, pid INTEGER NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS dead (id TEXT NOT NULL, reason TEXT NOT NULL, at REAL NOT NULL);
"""


@dataclass(frozen=True)
class LedgerReport:
    """The result of ``Ledger.check()``; see the module docstring for each field."""

    sent_ok: int
    sent_failed: int
    sent_unknown: int
    processed: int
    lost: frozenset[str]
    recovered: frozenset[str]
    unexpected: frozenset[str]
    failed_but_processed: frozenset[str]
    duplicated: dict[str, int] = field(default_factory=dict)
    dead_lettered: dict[str, str] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        """No loss, no unexpected runs, no run of a definitely failed send."""
        return not (self.lost or self.unexpected or self.failed_but_processed)

    def summary(self) -> str:
        """A few lines for assertion messages and test logs."""
        extra_runs = sum(count - 1 for count in self.duplicated.values())
        lines = [
            f"sent: ok={self.sent_ok} unknown={self.sent_unknown} failed={self.sent_failed}",
            f"processed (distinct ids): {self.processed}; dead-lettered: {len(self.dead_lettered)}",
            f"lost: {len(self.lost)}{_sample(self.lost)}",
            f"recovered: {len(self.recovered)}",
            f"unexpected: {len(self.unexpected)}{_sample(self.unexpected)}",
            f"failed but processed: {len(self.failed_but_processed)}"
            f"{_sample(self.failed_but_processed)}",
            f"duplicated: {len(self.duplicated)} ids, {extra_runs} extra runs"
            f"{_sample(self.duplicated)}",
            "VALID" if self.valid else "INVALID",
        ]
        return "\n".join(lines)


def _sample(ids: Iterable[str], limit: int = 5) -> str:
    """A short sorted sample of ids for the summary."""
    chosen = sorted(ids)[:limit]
    return f" e.g. {chosen}" if chosen else ""


class Ledger:
    """Append-only record of sends, runs and dead-letters in one SQLite file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._pid = -1
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._inherited: sqlite3.Connection | None = None
        ledger = weakref.ref(self)  # a weak reference: the fork hook must not keep it alive
        os.register_at_fork(
            after_in_child=lambda: (found := ledger()) and found._after_fork_in_child()
        )
        with self._session() as db:
            db.executescript(_SCHEMA)

    def record_send(self, message_id: str, outcome: Outcome) -> None:
        """Record one send attempt and its outcome as the client saw it."""
        self.record_sends([(message_id, outcome)])

    def record_sends(self, sends: Iterable[tuple[str, Outcome]]) -> None:
        """Record many send attempts in one transaction."""
        now = time.time()
        rows = [(message_id, _checked(outcome), now) for message_id, outcome in sends]
        self._write("INSERT INTO sends (id, outcome, at) VALUES (?, ?, ?)", rows)

    def record_processed(self, message_id: str) -> None:
        """Record one run of a message (every run counts, from any process)."""
        self.record_processed_many([message_id])

    def record_processed_many(self, message_ids: Iterable[str]) -> None:
        """Record many runs in one transaction."""
        now, pid = time.time(), os.getpid()
        rows = [(message_id, pid, now) for message_id in message_ids]
        self._write("INSERT INTO runs (id, pid, at) VALUES (?, ?, ?)", rows)

    def record_dead_lettered(self, message_id: str, reason: str) -> None:
        """Record that a message reached the dead-letter queue, and why."""
        self._write(
            "INSERT INTO dead (id, reason, at) VALUES (?, ?, ?)",
            [(message_id, reason, time.time())],
        )

    def check(self) -> LedgerReport:
        """Compare sends with runs and dead-letters (call it once the system is quiescent)."""
        with self._session() as db:
            best = _best_outcomes(db.execute("SELECT id, outcome FROM sends"))
            runs = dict(db.execute("SELECT id, COUNT(*) FROM runs GROUP BY id").fetchall())
            dead = dict(db.execute("SELECT id, reason FROM dead ORDER BY at").fetchall())
        by_outcome = {name: {i for i, o in best.items() if o == name} for name in OUTCOMES}
        ran = set(runs)
        return LedgerReport(
            sent_ok=len(by_outcome["ok"]),
            sent_failed=len(by_outcome["failed"]),
            sent_unknown=len(by_outcome["unknown"]),
            processed=len(ran),
            lost=frozenset(by_outcome["ok"] - ran - set(dead)),
            recovered=frozenset(by_outcome["unknown"] & ran),
            unexpected=frozenset(ran - set(best)),
            failed_but_processed=frozenset(by_outcome["failed"] & ran),
            duplicated={i: n for i, n in runs.items() if n > 1},
            dead_lettered=dead,
        )

    def close(self) -> None:
        """Close this process's connection (a later call reopens it)."""
        if self._db is None or self._pid != os.getpid():
            return
        with self._lock:
            self._db.close()
        self._db, self._pid = None, -1

    def _write(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        """Insert ``rows`` in one short immediate transaction."""
        if not rows:
            return
        with self._session() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(sql, rows)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextlib.contextmanager
    def _session(self) -> Iterator[sqlite3.Connection]:
        """This process's connection, under this process's lock (opened on first use)."""
        with self._lock:
            if self._db is None or self._pid != os.getpid():
                self._db = sqlite3.connect(
                    self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
                )
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._pid = os.getpid()
            yield self._db

    def _after_fork_in_child(self) -> None:
        """A forked child gets a fresh lock and, on first use, its own connection.

        Runs while the child is still single-threaded, so no thread can race the reset. The
        parent's lock may have been held at the fork, and SQLite connections must not cross a
        fork. The inherited connection is kept, never closed: closing it in the child could
        checkpoint or unlink files the parent uses.
        """
        self._inherited, self._db, self._pid = self._db, None, -1
        self._lock = threading.Lock()


def _checked(outcome: str) -> str:
    """Reject outcomes other than ok, failed and unknown."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, not {outcome!r}")
    return outcome


def _best_outcomes(rows: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Each id's best send outcome: ok over unknown over failed."""
    best: dict[str, str] = {}
    for message_id, outcome in rows:
        if message_id not in best or _RANK[outcome] > _RANK[best[message_id]]:
            best[message_id] = outcome
    return best
