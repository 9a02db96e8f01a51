"""The worker supervisor's own entry point: ``python -m actors._launch OPTIONS_JSON``.

``actors worker`` parses its command line with click, then replaces itself (same pid) with
this small program, so that neither the supervisor nor the worker processes it forks carry
click and the rest of the command line (about 1.5 MB in every worker process). Not an API:
the JSON is whatever ``actors worker`` writes.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"


def configure_logging(level: str, log_file: str | None) -> None:
    """Log at `level` to `log_file` (default: stderr), quieting the AMQP clients' chatter."""
    handler: logging.Handler = (
        logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("pika", "aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def exec_supervisor(options: dict[str, Any]) -> None:
    """Replace this process with the supervisor for `options` (never returns)."""
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, "-m", "actors._launch", json.dumps(options)]
    os.execv(sys.executable, argv)


def main(argv: list[str]) -> int:
    """Run the supervisor described by the JSON in ``argv[0]``; return its exit code."""
    options = json.loads(argv[0])
    configure_logging(options["log_level"], options["log_file"])

    from actors.supervisor import Supervisor, WorkerSpec

    spec = WorkerSpec(
        modules=tuple(options["modules"]),
        debug=options["log_level"] == "debug",
        broker_url=options["broker_url"],
        queues=tuple(options["queues"]),
        threads=options["threads"],
        adaptive_threads=options["adaptive_threads"],
        shutdown_timeout=options["shutdown_timeout"],
        max_tasks=options["max_tasks"],
    )
    on_child_boot: Callable[[], None] | None = None
    if options["metrics_port"] is not None:
        from actors.middleware.prometheus import prepare_multiprocess, serve_metrics

        on_child_boot = prepare_multiprocess()
        serve_metrics(options["metrics_port"])
    pid_file = options["pid_file"]
    if pid_file:
        Path(pid_file).write_text(f"{os.getpid()}\n")
    watch = Path(options["watch"]) if options["watch"] else None
    try:
        supervisor = Supervisor(
            spec, processes=options["processes"], watch=watch, on_child_boot=on_child_boot
        )
        return supervisor.run()
    finally:
        if pid_file:
            Path(pid_file).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
