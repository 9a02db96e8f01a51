"""Run one scenario of one system in this process and print its JSON result.

    python -m bench.child SYSTEM SCENARIO N

The result is the last stdout line, prefixed with ``BENCH_RESULT ``; diagnostics go to stderr.
"""

from __future__ import annotations

import json
import sys
import time
import traceback

from bench.systems import load

MARKER = "BENCH_RESULT "


def main(argv: list[str]) -> int:
    system_name, scenario, n = argv[0], argv[1], int(argv[2])
    system = load(system_name)
    t0 = time.perf_counter()
    try:
        result = system.run(scenario, n)
    except Exception as exc:
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
    result["wall_s"] = time.perf_counter() - t0
    sys.stdout.flush()
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
