"""The worker supervisor: runs worker processes, restarts the one that dies, stops them all.

The supervisor does not import the actor modules, which keeps it small: each child imports them
after the fork and opens its own broker connection. Each child reports on a pipe whether the
modules imported; if the first report is an import error, the supervisor prints it and exits 2.
The supervisor does import the worker runtime and the broker package before forking: a child
that inherits them has a smaller RSS than one importing them itself (measured: the shared
libraries they load, OpenSSL's above all, count in a child only for the pages it touches).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

logger = logging.getLogger("actors.supervisor")

#: Exit code when a module that declares actors cannot be imported.
EXIT_IMPORT_ERROR = 2
#: Exit code of a child that must be replaced at once (a hung actor past its hard limit).
EXIT_REPLACE = 3
_RESTART_BACKOFF_MAX = 30.0
_IMPORTED, _FAILED = b"+", b"-"  # first byte of a child's report


@dataclass(frozen=True)
class WorkerSpec:
    """What each worker process runs.

    ``modules`` are imported by each worker process; ``debug`` logs the traceback of an
    import error (the one-line error is always reported).
    """

    modules: tuple[str, ...]
    broker_url: str | None
    queues: tuple[str, ...]
    threads: int
    adaptive_threads: bool
    shutdown_timeout: float
    max_tasks: int | None
    debug: bool = False


def import_error(modules: Sequence[str], *, debug: bool) -> str | None:
    """Import the modules that declare actors; return a one-line error for the first that fails.

    Modules next to the caller are importable, as with ``python -m``. With `debug`, the
    traceback is logged too.
    """
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            if debug:
                logger.exception("cannot import %s", module)
            return (
                f"actors: cannot import module {module!r}: {type(exc).__name__}: {exc} "
                "(run with --log-level debug for the traceback)"
            )
    return None


def run_child(
    spec: WorkerSpec,
    supervisor: int,
    on_boot: Callable[[], None] | None = None,
    report: int | None = None,
) -> None:
    """The body of one worker process: consume until SIGTERM, then shut down and exit 0.

    Args:
        spec: What to run.
        supervisor: The supervisor's pid; the child shuts down if it stops being its parent.
        on_boot: Called once the broker is set (metrics set-up).
        report: Write end of a pipe on which to report whether ``spec.modules`` imported;
            the child exits `EXIT_IMPORT_ERROR` if they did not.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor turns Ctrl-C into SIGTERM
    stop_asked = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        if stop_asked.is_set():
            os._exit(1)  # second signal: force
        stop_asked.set()

    signal.signal(signal.SIGTERM, on_term)
    error = import_error(spec.modules, debug=spec.debug)
    if report is not None:
        with os.fdopen(report, "wb") as pipe:
            pipe.write(_IMPORTED if error is None else _FAILED + error.encode())
    if error is not None:
        logging.shutdown()
        os._exit(EXIT_IMPORT_ERROR)

    from actors import registry
    from actors.settings import broker_from_url
    from actors.worker import Worker

    if spec.broker_url:
        registry.set_broker(broker_from_url(spec.broker_url))
    if on_boot is not None:
        on_boot()
    worker = Worker(
        registry.get_broker(),
        queues=spec.queues or None,
        threads=spec.threads,
        adaptive_threads=spec.adaptive_threads,
        shutdown_timeout=spec.shutdown_timeout,
        max_messages=spec.max_tasks,
    )
    worker.supervised = True
    worker.start()
    while not stop_asked.wait(0.2) and not worker.stopping.is_set():
        if os.getppid() != supervisor:  # the supervisor was killed: do not run on as an orphan
            logger.error("the supervisor (pid %s) is gone; shutting down", supervisor)
            break
    worker.stop()
    logging.shutdown()
    os._exit(0)


class Supervisor:
    """Starts `processes` children running `spec`; restarts only the child that died.

    A child that exits 0 on its own (recycled after ``--max-tasks-per-child``) or that dies
    is replaced; on SIGTERM or SIGINT every child is told to shut down gracefully and the
    supervisor exits 0 once they have; a second signal kills them. If no child has imported
    the modules yet and one reports an import error, the supervisor prints it, stops the
    children and exits `EXIT_IMPORT_ERROR`; later, such a child is restarted like one that died.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        *,
        processes: int,
        watch: Path | None = None,
        on_child_boot: Callable[[], None] | None = None,
    ) -> None:
        self.spec = spec
        self.processes = max(1, processes)
        self.watch = watch
        self._on_child_boot = on_child_boot
        self._context = multiprocessing.get_context("fork")
        self._children: dict[int, BaseProcess] = {}
        self._stopping = threading.Event()
        self._signals = 0
        self._restart_after = False
        self._reports: dict[int, int] = {}  # slot -> read end of its child's report pipe
        self._booted = False  # a child imported the modules
        self._exit_code = 0

    def run(self) -> int:
        """Run until told to stop; return the exit code."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        # Snapshot before the children start, so that a change while they boot counts too.
        before = _snapshot(self.watch) if self.watch is not None else {}
        _preload(self.spec.broker_url)
        for slot in range(self.processes):
            self._start(slot)
        if self.watch is not None:
            threading.Thread(
                target=self._watch_files, args=(before,), name="actors-watch", daemon=True
            ).start()
        self._supervise()
        if self._restart_after:
            logger.info("code changed: restarting")
            os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
        return self._exit_code

    def _start(self, slot: int) -> None:
        read, write = os.pipe()
        child = self._context.Process(
            target=run_child,
            args=(self.spec, os.getpid(), self._on_child_boot, write),
            name=f"actors-worker-{slot}",
            daemon=False,
        )
        try:
            child.start()
        finally:
            os.close(write)  # else children forked later would hold it open too
        if slot in self._reports:
            os.close(self._reports.pop(slot))
        self._reports[slot] = read
        self._children[slot] = child

    def _read_reports(self) -> None:
        """Log the children that imported the modules; stop all if the first report is an error."""
        if not self._reports:
            return
        ready, _, _ = select.select(list(self._reports.values()), [], [], 0)
        for slot, read in list(self._reports.items()):
            if read not in ready:
                continue
            del self._reports[slot]
            with os.fdopen(read, "rb") as pipe:
                report = pipe.read()  # the child closes its end right after writing
            pid = self._children[slot].pid
            if report == _IMPORTED:
                self._booted = True
                logger.info("started worker process %s (pid %s)", slot, pid)
            elif report.startswith(_FAILED):
                error = report[1:].decode(errors="replace")
                if self._booted:
                    logger.error("worker process %s (pid %s): %s", slot, pid, error)
                elif not self._stopping.is_set():
                    print(error, file=sys.stderr, flush=True)
                    self._exit_code = EXIT_IMPORT_ERROR
                    self._stopping.set()
            # an empty report: the child died first, and is restarted below

    def _supervise(self) -> None:
        failures: dict[int, int] = {}
        while not self._stopping.is_set():
            time.sleep(0.2)
            self._read_reports()
            for slot, child in list(self._children.items()):
                if child.is_alive() or self._stopping.is_set():
                    continue
                code = child.exitcode
                child.join()
                if code == 0:
                    failures[slot] = 0
                    logger.info("worker process %s recycled", slot)
                else:
                    failures[slot] = failures.get(slot, 0) + 1
                    logger.error("worker process %s exited with code %s; restarting", slot, code)
                    delay = min(_RESTART_BACKOFF_MAX, 0.5 * 2 ** (failures[slot] - 1))
                    if self._stopping.wait(delay if failures[slot] > 1 else 0):
                        break
                self._start(slot)
        self._stop_children()

    def _stop_children(self) -> None:
        for child in self._children.values():
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.spec.shutdown_timeout + 10
        for child in self._children.values():
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                logger.error("worker process %s did not stop in time; killing it", child.pid)
                child.kill()
                child.join()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            for child in self._children.values():
                if child.is_alive():
                    child.kill()
            os._exit(1)
        logger.info("received %s: shutting down", signal.Signals(signum).name)
        self._stopping.set()

    def _watch_files(self, before: dict[Path, float]) -> None:
        assert self.watch is not None
        while not self._stopping.wait(1.0):
            now = _snapshot(self.watch)
            if now != before:
                self._restart_after = True
                self._stopping.set()
                return


def _preload(broker_url: str | None) -> None:
    """Import the worker runtime and the broker `broker_url` names, for the children to inherit.

    A failure here is left for the children to report: they import the same modules.
    """
    from actors.settings import broker_module

    modules = ["actors.worker"]
    if broker_url and (module := broker_module(broker_url)):
        modules.append(module)
    for module in modules:
        with contextlib.suppress(Exception):
            importlib.import_module(module)


def _snapshot(root: Path) -> dict[Path, float]:
    return {path: path.stat().st_mtime for path in root.rglob("*.py") if path.is_file()}
