"""The actors that fault-test workers run: ``actors worker tests.faults.app --broker URL``.

Only worker processes import this module. It reads its scenario from the environment (set by
`tests.faults.support.WorkerProcess`): the queue (``FAULT_QUEUE``), the ledger file
(``FAULT_LEDGER``), how long each `record` run works before it records (``FAULT_WORK_SECONDS``)
and, optionally, a second ledger where `record` notes each start (``FAULT_STARTS``). Every
actor records its key into the ledger *after* its work, so a run counts once its effect
happened; the key is also the message id.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import actors
from tests.support.ledger import Ledger

QUEUE = os.environ["FAULT_QUEUE"]
LEDGER_PATH = Path(os.environ["FAULT_LEDGER"])
STARTS_PATH = Path(os.environ["FAULT_STARTS"]) if os.environ.get("FAULT_STARTS") else None
WORK_SECONDS = float(os.environ.get("FAULT_WORK_SECONDS", "0"))


_opened: dict[tuple[int, Path], Ledger] = {}
_opening = threading.Lock()


def ledger(path: Path) -> Ledger:
    """This worker process's `Ledger` on `path`, opened once, before any thread writes to it.

    A `Ledger` inherited across the fork reopens its SQLite connection on first use in the
    child, and that reopening is not safe when several worker threads hit it at once.
    """
    key = (os.getpid(), path)
    with _opening:
        if key not in _opened:
            _opened[key] = Ledger(path)
        return _opened[key]


@actors.actor(queue=QUEUE, max_retries=0)
def record(key: str, padding: str = "") -> None:
    """Work `FAULT_WORK_SECONDS`, then record one run of `key`."""
    if STARTS_PATH is not None:
        ledger(STARTS_PATH).record_processed(key)
    if WORK_SECONDS:
        time.sleep(WORK_SECONDS)
    ledger(LEDGER_PATH).record_processed(key)
