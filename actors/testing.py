"""Helpers for testing code that uses actors: bounded waits and in-process workers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from actors.broker import Broker
from actors.worker import Worker


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition",
) -> Any:
    """Return the first truthy value of `predicate()`, checking every `interval` seconds.

    Raises:
        TimeoutError: `predicate` stayed falsy for `timeout` seconds; names `message`.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{message} not met within {timeout}s")
        time.sleep(interval)


@contextmanager
def running_worker(broker: Broker, **options: Any) -> Iterator[Worker]:
    """Run a `Worker` on `broker` for the duration of a ``with`` block, then stop it."""
    worker = Worker(broker, **options)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop(timeout=options.get("shutdown_timeout", 10.0))
