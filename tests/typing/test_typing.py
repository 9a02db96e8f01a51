"""The public API is typed: mypy flags wrong arguments to send() and knows result types."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def test_mypy_flags_exactly_the_marked_lines() -> None:
    sample = HERE / "check_send.py"
    expected = {
        number
        for number, line in enumerate(sample.read_text().splitlines(), start=1)
        if "# E:" in line
    }
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--hide-error-context",
         "--no-error-summary", str(sample)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    flagged = {
        int(match.group(1))
        for match in re.finditer(rf"{re.escape(sample.name)}:(\d+): error", run.stdout)
    }
    assert flagged == expected, run.stdout
