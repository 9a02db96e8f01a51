"""Markdown report from the per-run results: medians, ratios, details, environment."""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

from bench.scenarios import SCENARIOS

Results = dict[str, dict[str, list[dict[str, Any]]]]

METHOD = """\
How it is measured (see bench/common.py):
- Every (run, scenario, system) is a fresh child process; systems are interleaved run by run.
  Numbers are medians over the runs; "range" is min-max over the runs that gave a result.
- The task does one Redis INCR (db 15) per message; queues are classic durable, messages
  persistent; every queue and key is unique per run and deleted afterwards.
- send_*: one thread, timed from the first publish until the last publish returns (with
  confirms: until it is confirmed; actors' default send_confirm streams confirms, and its
  clock stops after `broker.flush()` confirmed the last one; send_confirm_wait and
  latency_wait make actors' send() wait for each confirm, as the others' confirmed sends do).
  bulk_confirm: chunks of 1,000 publishes in flight, wait for all their confirms, next chunk.
- drain_*: workers start on an empty queue and are waited for (ready line, then consumer count
  on RabbitMQ); idle RSS is sampled, the worker processes are suspended (SIGSTOP), the backlog
  is published with the system's own client, the workers are resumed (SIGCONT) and the Redis
  counter is polled every 50 ms until it reads N. msg/s = N / (resume -> N). So the rate is a
  warm worker on a pre-filled backlog; startup (spawn -> ready) is listed apart.
  CPU figures are CPU seconds of the worker process tree (and of the broker process) over the
  drain window, per message; "machine busy" is the whole machine (200 % = both cores);
  "other busy" is what processes outside the run (other sessions, background jobs) used in
  the same window, in % of one core: the noise indicator for that row.
- latency: 20 warm-up messages, then N sequential messages: send one, the task INCRs and
  RPUSHes (one pipeline), the driver BLPOPs; end to end, in ms.
- Ratios divide medians: for msg/s higher is better, for latency (ms) lower is better.
"""


def _ok(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in runs if "value" in r and not r.get("error")]


def _med(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
    vals = [v for v in vals if not math.isnan(v)]
    return statistics.median(vals) if vals else None


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if unit == "msg/s" else f"{value:.2f}"


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(value: float | None, ref: float | None) -> str:
    if value is None or not ref:
        return "-"
    return f"{value / ref:.2f}x"


def _rss(runs: list[dict[str, Any]]) -> str:
    """Per process (tree order: parent first), median idle -> median peak, in MB."""
    lists = [(r.get("rss_idle_mb") or [], r.get("rss_peak_mb") or []) for r in runs]
    if not lists:
        return "-"
    width = min(min(len(i), len(p)) for i, p in lists)
    parts = []
    for k in range(width):
        idle = statistics.median(i[k] for i, _ in lists)
        peak = statistics.median(p[k] for _, p in lists)
        parts.append(f"{idle:.0f}->{peak:.0f}")
    return ", ".join(parts) or "-"


def summary_table(results: Results, scenarios: list[str], systems: list[str]) -> list[str]:
    lines = [
        "| scenario | system | median | unit | range | ok runs | x Dramatiq | x Celery | x raw |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for sc in scenarios:
        spec = SCENARIOS[sc]
        by_sys = results.get(sc, {})
        meds = {s: _med(_ok(runs), "value") for s, runs in by_sys.items()}
        for system in systems:
            if system not in by_sys:
                continue
            runs = by_sys[system]
            good = _ok(runs)
            med = meds[system]
            values = [r["value"] for r in good]
            rng = (
                f"{_fmt(min(values), spec.unit)}-{_fmt(max(values), spec.unit)}" if values else "-"
            )
            unit = "msg/s" if spec.higher_is_better else "ms p50"
            lines.append(
                f"| {sc} | {system} | {_fmt(med, spec.unit)} | {unit} | {rng} "
                f"| {len(good)}/{len(runs)} | {_ratio(med, meds.get('dramatiq'))} "
                f"| {_ratio(med, meds.get('celery'))} | {_ratio(med, meds.get(spec.raw_ref))} |"
            )
    return lines


def send_table(results: Results, scenarios: list[str], systems: list[str]) -> list[str]:
    lines = [
        "| scenario | system | msg/s | client CPU us/msg | broker CPU us/msg | other busy % "
        "| queued (last run) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for sc in scenarios:
        if not sc.startswith(("send_", "bulk_")):
            continue
        for system in systems:
            runs = _ok(results.get(sc, {}).get(system, []))
            if not runs:
                continue
            lines.append(
                f"| {sc} | {system} | {_num(_med(runs, 'value'))} "
                f"| {_num(_med(runs, 'client_cpu_us'))} | {_num(_med(runs, 'broker_cpu_us'))} "
                f"| {_num(_med(runs, 'other_busy_pct'))} | {runs[-1].get('queued', '-')} |"
            )
    return lines


def drain_table(results: Results, scenarios: list[str], systems: list[str]) -> list[str]:
    lines = [
        "| scenario | system | msg/s | worker CPU us/msg | broker CPU us/msg | machine busy % "
        "| other busy % | startup s | fill msg/s | RSS MB idle->peak per process |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for sc in scenarios:
        if "drain" not in sc:
            continue
        for system in systems:
            runs = _ok(results.get(sc, {}).get(system, []))
            if not runs:
                continue
            lines.append(
                f"| {sc} | {system} | {_num(_med(runs, 'value'))} "
                f"| {_num(_med(runs, 'worker_cpu_us'))} | {_num(_med(runs, 'broker_cpu_us'))} "
                f"| {_num(_med(runs, 'machine_busy_pct'))} | {_num(_med(runs, 'other_busy_pct'))} "
                f"| {_num(_med(runs, 'startup_s'), 2)} "
                f"| {_num(_med(runs, 'fill_rate'))} | {_rss(runs)} |"
            )
    return lines


def latency_table(results: Results, scenarios: list[str], systems: list[str]) -> list[str]:
    lines = [
        "| scenario | system | p50 ms | p95 ms | p99 ms | max ms | lost | other busy % "
        "| startup s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sc in scenarios:
        if "latency" not in sc:
            continue
        for system in systems:
            runs = _ok(results.get(sc, {}).get(system, []))
            if not runs:
                continue
            cells = [_num(_med(runs, k), 2) for k in ("p50", "p95", "p99", "max")]
            lost = sum(int(r.get("lost", 0)) for r in runs)
            lines.append(
                f"| {sc} | {system} | {' | '.join(cells)} | {lost} "
                f"| {_num(_med(runs, 'other_busy_pct'))} | {_num(_med(runs, 'startup_s'), 2)} |"
            )
    return lines


def errors(results: Results) -> list[str]:
    out = []
    for sc, by_sys in results.items():
        for system, runs in by_sys.items():
            for i, r in enumerate(runs):
                if r.get("error"):
                    out.append(f"- {sc} / {system} / run {i + 1}: {r['error']}")
    return out


def environment_lines(env: dict[str, Any]) -> list[str]:
    m = env["machine"]
    libs = ", ".join(f"{k} {v}" for k, v in env["libraries"].items())
    return [
        f"- Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB RAM, "
        f"Linux {m['kernel']}, Python {m['python']}; load average (1/5/15 min) at the start "
        f"{env.get('loadavg_at_start', '?')}, at the end {m['loadavg_at_end']}",
        f"- Broker: {env['rabbitmq']}; {env['redis']}",
        f"- Libraries: {libs}",
    ]


def scenario_lines(scenarios: list[str], quick: bool) -> list[str]:
    lines = ["| scenario | N | what | x raw compares with |", "|---|---:|---|---|"]
    for sc in scenarios:
        spec = SCENARIOS[sc]
        lines.append(f"| {sc} | {spec.n(quick):,} | {spec.what} | {spec.raw_ref} |")
    return lines


def render(
    *,
    results: Results,
    scenarios: list[str],
    systems: list[str],
    skipped: list[str],
    env: dict[str, Any],
    command: str,
    started: float,
    total_s: float,
    runs: int,
    quick: bool,
    leftovers: list[str],
) -> str:
    when = time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(started))
    out = [
        "# Benchmarks",
        "",
        f"`{command}` — {when}, {runs} run(s){' (quick)' if quick else ''}, "
        f"total {total_s / 60:.1f} min.",
        "",
        *environment_lines(env),
    ]
    if skipped:
        out.append(f"- Not run (no selected scenario implemented): {', '.join(skipped)}")
    waits = [
        r.get("quiet_wait_s", 0.0) for by in results.values() for rs in by.values() for r in rs
    ]
    if any(waits):
        out.append(
            f"- Waited {sum(waits):.0f} s in all for the machine to be quiet before runs "
            f"(longest {max(waits):.0f} s); the machine is shared with other sessions."
        )
    if leftovers:
        out.append(f"- Cleaned up after crashed runs: {', '.join(leftovers)}")
    out += ["", "## Summary", "", *summary_table(results, scenarios, systems), ""]
    for title, table in (
        ("Enqueue", send_table),
        ("Drain", drain_table),
        ("Latency", latency_table),
    ):
        rows = table(results, scenarios, systems)
        if len(rows) > 2:
            out += [f"## {title}", "", *rows, ""]
    out += ["## Scenarios", "", *scenario_lines(scenarios, quick), "", METHOD]
    errs = errors(results)
    if errs:
        out += ["## Errors", "", *errs, ""]
    return "\n".join(out)
