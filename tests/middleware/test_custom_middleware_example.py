"""The custom-middleware example runs as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "examples" / "custom_middleware.py"


def test_the_tenant_example_runs_and_logs_the_tenant_on_the_worker_side() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == ["tenant acme: total 30", "tenant globex: total 5"]
    assert "for tenant acme" in done.stderr and "for tenant globex" in done.stderr
