"""Run the benchmark scenarios for every system and write a Markdown report.

    python -m bench.run [--quick] [--runs N] [--only SYSTEM,...] [--scenarios NAME,...]
                        [--out docs/benchmarks.md]

Each (run, scenario, system) is one child process (``python -m bench.child``), so imports and
RSS are isolated. Systems are interleaved run by run (run 1: A, B, C; run 2: B, C, A; ...) so
drift on this shared machine spreads over all of them; the report shows medians over runs.
Measures; never asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from bench import environment, report
from bench.child import MARKER
from bench.common import PYTHON, REPO_ROOT
from bench.scenarios import SCENARIOS
from bench.systems import REGISTRY, load
from bench.systems.base import System


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 messages (latency: 100)")
    ap.add_argument("--runs", type=int, default=3, help="runs per scenario and system")
    ap.add_argument("--only", default="", help=f"systems, comma-separated: {','.join(REGISTRY)}")
    ap.add_argument("--scenarios", default="", help=f"comma-separated: {','.join(SCENARIOS)}")
    ap.add_argument("--out", default="", help="also write the Markdown report here")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per child run")
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=3.0,
        help="before each child, wait up to this many seconds for the machine to be quiet "
        "(other processes below --quiet-below); 0 = do not wait",
    )
    ap.add_argument(
        "--quiet-below",
        type=float,
        default=30.0,
        help="machine-wide CPU %% (100 = all cores) under which it counts as quiet",
    )
    return ap.parse_args(argv)


def _split(value: str, known: dict[str, Any], what: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()] or list(known)
    unknown = [v for v in names if v not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def run_child(system: str, scenario: str, n: int, timeout: float, log_path: Path) -> dict[str, Any]:
    cmd = [PYTHON, "-m", "bench.child", system, scenario, str(n)]
    with log_path.open("a") as log_file:
        log_file.write(f"\n===== {time.strftime('%H:%M:%S')} {shlex.join(cmd)}\n")
        log_file.flush()
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log_file, text=True
        )
        try:
            stdout, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            proc.communicate()
            return {"error": f"child timed out after {timeout:.0f}s"}
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            result: dict[str, Any] = json.loads(line[len(MARKER) :])
            return result
    return {"error": f"child exited {proc.returncode} without a result (see {log_path})"}


def _kill_tree(pid: int) -> None:
    """The child and the workers it started (they run in sessions of their own)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()


def wait_quiet(max_wait: float, below: float) -> float:
    """Sample machine CPU in 0.5 s windows until one is under ``below`` % or time is up.

    The machine is shared (other sessions run test suites): this skips their bursts.
    Returns the seconds waited."""
    if max_wait <= 0:
        return 0.0
    t0 = time.perf_counter()
    while psutil.cpu_percent(interval=0.5) >= below:
        if time.perf_counter() - t0 >= max_wait:
            break
    return time.perf_counter() - t0


def _progress(run: int, runs: int, scenario: str, system: str, res: dict[str, Any]) -> None:
    if "value" in res:
        unit = res.get("unit", "")
        shown = f"{res['value']:,.0f} {unit}" if unit == "msg/s" else f"{res['value']:.2f} {unit}"
    else:
        shown = "-"
    err = f"  ERROR {res['error']}" if res.get("error") else ""
    wall = res.get("wall_s", 0.0)
    print(
        f"[run {run + 1}/{runs}] {scenario:<16} {system:<12} {shown:>14}  ({wall:.1f}s){err}",
        file=sys.stderr,
        flush=True,
    )


def plan(systems: dict[str, System], scenarios: list[str], run: int) -> list[tuple[str, str]]:
    """(scenario, system) pairs of one run, systems rotated by the run index."""
    order = []
    for sc in scenarios:
        names = [s for s in systems if systems[s].supports(sc)]
        if names:
            k = run % len(names)
            order.extend((sc, s) for s in names[k:] + names[:k])
    return order


def warmup(systems: dict[str, System], scenarios: list[str], timeout: float, log: Path) -> None:
    """One short unmeasured child first: page cache, broker connections, disk."""
    for system, scenario, n in (
        ("raw_pika", "send_confirm", 500),
        ("raw_redis", "redis_latency", 50),
    ):
        if system in systems and scenario in scenarios:
            res = run_child(system, scenario, n, timeout, log)
            print(
                f"[warm-up] {scenario} {system}: {res.get('value', res.get('error'))}",
                file=sys.stderr,
            )
            return


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    scenarios = _split(args.scenarios, SCENARIOS, "scenario")
    wanted = _split(args.only, REGISTRY, "system")
    systems = {name: load(name) for name in wanted}
    skipped = [n for n, s in systems.items() if not any(s.supports(sc) for sc in scenarios)]
    systems = {n: s for n, s in systems.items() if n not in skipped}

    run_id = uuid.uuid4().hex[:6]
    os.environ["BENCH_RUN_ID"] = run_id
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_path = REPO_ROOT / "bench" / "results" / "logs" / f"{stamp}-{run_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "-m", "bench.run", *(sys.argv[1:] if argv is None else argv)])
    print(f"bench: run id {run_id}, child logs in {log_path}", file=sys.stderr)
    if skipped:
        print(f"bench: no selected scenario implemented by: {', '.join(skipped)}", file=sys.stderr)

    started = time.time()
    load_at_start = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    t0 = time.perf_counter()
    warmup(systems, scenarios, args.timeout, log_path)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for run in range(args.runs):
        for scenario, system in plan(systems, scenarios, run):
            n = SCENARIOS[scenario].n(args.quick)
            waited = wait_quiet(args.quiet_wait, args.quiet_below)
            res = run_child(system, scenario, n, args.timeout, log_path)
            res["quiet_wait_s"] = waited
            results.setdefault(scenario, {}).setdefault(system, []).append(res)
            _progress(run, args.runs, scenario, system, res)
    total_s = time.perf_counter() - t0
    leftovers = environment.cleanup_leftovers(run_id)

    env = environment.collect(systems)
    env["loadavg_at_start"] = load_at_start
    text = report.render(
        results=results,
        scenarios=scenarios,
        systems=list(systems),
        skipped=skipped,
        env=env,
        command=command,
        started=started,
        total_s=total_s,
        runs=args.runs,
        quick=args.quick,
        leftovers=leftovers,
    )
    print(text)
    raw_path = log_path.with_suffix(".json")
    raw_path.write_text(json.dumps({"env": env, "command": command, "results": results}, indent=1))
    if args.out:
        out = Path(args.out)
        if not out.is_absolute():
            out = Path.cwd() / out
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"bench: wrote {out} (raw results: {raw_path})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
