"""The floor: actors' AMQP link, the task run inline on the reading thread (no framework).

Not a product anyone would run: it blocks its only thread while a task runs. It answers how
fast a Python consumer can be here at all, with the same sender as raw pika's (one blocking
pika channel, no confirms) and the same queue, so the latency targets can be set against it.
"""

from __future__ import annotations

from typing import Any

from bench.systems.base import System
from bench.systems.raw_pika import raw_amqp_drain, raw_amqp_latency


class RawLink(System):
    name = "raw_link"
    scenarios = frozenset({"drain_1x8", "drain_2x8", "latency", "latency_noconfirm"})
    packages = ("actors-runtime", "pika", "redis")

    def scenario_drain_1x8(self, n: int) -> dict[str, Any]:
        return raw_amqp_drain("link", self.name, "drain_1x8", n, procs=1)

    def scenario_drain_2x8(self, n: int) -> dict[str, Any]:
        return raw_amqp_drain("link", self.name, "drain_2x8", n, procs=2)

    def scenario_latency(self, n: int) -> dict[str, Any]:
        return raw_amqp_latency("link", self.name, n)

    def scenario_latency_noconfirm(self, n: int) -> dict[str, Any]:
        return raw_amqp_latency("link", self.name, n)


SYSTEM = RawLink()
