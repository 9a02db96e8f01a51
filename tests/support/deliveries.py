"""Helpers for tests that take deliveries from a bare consumer and settle them by hand."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from actors.broker import Broker
from actors.delivery import Delivery
from actors.testing import wait_until


def ack_as_they_come(taken: list[Delivery], count: int) -> None:
    """Ack the first `count` deliveries of `taken` in order, waiting (bounded) for each."""
    for settled in range(count):
        wait_until(lambda n=settled: len(taken) > n, message=f"delivery {settled + 1}")
        taken[settled].ack()


def first_args(broker: Broker, deliveries: Iterable[Delivery]) -> list[Any]:
    """The first argument of each delivery's message."""
    return [broker.codec.unpack(d.body, d.headers).args[0] for d in deliveries]
