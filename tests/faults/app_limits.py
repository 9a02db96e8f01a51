"""The app plus actors that only a time limit stops: ``actors worker tests.faults.app_limits``.

Kept apart from tests/faults/app.py because an async actor changes the worker's prefetch (its
async slots are added to it), and the other fault tests count on the sync-only prefetch.
``FAULT_TIME_LIMIT`` sets their limit in seconds (default 3).
"""

from __future__ import annotations

import asyncio
import os

import actors
from tests.faults.app import QUEUE, record

__all__ = ["hang", "record", "spin"]

TIME_LIMIT = float(os.environ.get("FAULT_TIME_LIMIT", "3"))


@actors.actor(queue=QUEUE, max_retries=0, time_limit=TIME_LIMIT)
def spin(key: str) -> None:
    """A CPU-bound pure-Python loop that never ends on its own (the time limit stops it)."""
    while True:
        pass


@actors.actor(queue=QUEUE, max_retries=0, time_limit=TIME_LIMIT)
async def hang(key: str) -> None:
    """An async actor that waits forever (the time limit cancels it)."""
    await asyncio.Event().wait()
