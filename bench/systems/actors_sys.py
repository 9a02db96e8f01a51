"""Plug point for the `actors` runner (not written yet: it supports no scenario).

To fill in: set ``scenarios`` to the names it implements and add ``scenario_<name>`` methods,
the same way as ``dramatiq_sys.py`` (worker processes through ``WorkerGroup`` running a task
module in ``bench/tasks/``; the drains and latency through ``measure_drain`` /
``measure_latency``; sends through ``measure_send``; ``bulk_confirm`` through
``enqueue_many``). Use ``Names(self.name, scenario)`` for queues and keys and clean them up.
"""

from __future__ import annotations

from bench.systems.base import System


class ActorsSystem(System):
    name = "actors"
    scenarios = frozenset()
    packages = ("actors-runtime",)


SYSTEM = ActorsSystem()
