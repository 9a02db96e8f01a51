"""The protocol every benchmarked system implements.

A system is a module in ``bench/systems/`` that exposes ``SYSTEM``, an instance of a
``System`` subclass, and is listed in ``bench.systems.REGISTRY``. Its module must import only
the standard library and ``bench.*`` at top level (the orchestrator imports it to ask
``supports``); the library under test is imported inside the methods, which only ever run in
the per-run child process (``python -m bench.child SYSTEM SCENARIO N``).

``run(scenario, n)`` returns a JSON-able dict with at least::

    {"value": float, "unit": "msg/s" | "ms", "n": int}

Send scenarios add ``seconds``, ``client_cpu_us``, ``broker_cpu_us`` (see
``bench.common.measure_send``); drains add ``startup_s``, ``fill_s``, ``rss_idle_mb`` /
``rss_peak_mb`` (one entry per worker-tree process), ``processes``, ``worker_cpu_us``,
``broker_cpu_us``, ``machine_busy_pct`` (``bench.common.measure_drain``); latency adds
``p50``/``p95``/``p99``/``mean``/``max`` in ms (``bench.common.measure_latency``). A result may
carry ``"error": str`` when it is not trustworthy (deadline hit, lost messages); the table
shows it. Do not assert: report.

Conventions all runners follow so the numbers compare:

* queues are classic, durable, messages persistent; names come from ``bench.common.Names``
  (unique per run) and are deleted afterwards, as are the Redis keys (db 15) under the prefix;
* the task does exactly one Redis INCR on ``Names.counter_key`` (plus, in latency scenarios,
  an RPUSH to ``Names.notify_key`` in the same pipeline);
* drains: start the workers on an empty queue, wait until ready, let ``measure_drain`` suspend
  them, fill, resume and time; latency: ``measure_latency`` with 20 warm-up messages;
* worker processes are started with ``bench.common.WorkerGroup`` (SIGTERM, bounded wait,
  SIGKILL).

To add a system (the actors runner goes in ``bench/systems/actors_sys.py``, already listed):
subclass ``System``, set ``name``, ``scenarios`` and ``packages``, write one
``scenario_<name>(self, n) -> dict`` method per supported scenario, and expose
``SYSTEM = YourSystem()``.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, ClassVar


class System:
    #: name used on the command line (--only) and in the tables
    name: ClassVar[str] = ""
    #: scenario names (see bench.scenarios.SCENARIOS) this system implements
    scenarios: ClassVar[frozenset[str]] = frozenset()
    #: distributions whose versions the report lists for this system
    packages: ClassVar[tuple[str, ...]] = ()

    def supports(self, scenario: str) -> bool:
        return scenario in self.scenarios

    def versions(self) -> dict[str, str]:
        out = {}
        for pkg in self.packages:
            try:
                out[pkg] = metadata.version(pkg)
            except metadata.PackageNotFoundError:
                out[pkg] = "not installed"
        return out

    def run(self, scenario: str, n: int) -> dict[str, Any]:
        if not self.supports(scenario):
            raise ValueError(f"{self.name} does not implement {scenario}")
        method = getattr(self, f"scenario_{scenario}")
        result: dict[str, Any] = method(n)
        return result
