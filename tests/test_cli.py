"""The command line: flags, import errors, and the supervisor's process management."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

import actors
from actors.testing import wait_until


def _actors(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actors", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def test_version(tmp_path: Path) -> None:
    run = _actors("--version", cwd=tmp_path)
    assert run.returncode == 0
    assert actors.__version__ in run.stdout


def test_worker_help_explains_every_flag(tmp_path: Path) -> None:
    run = _actors("worker", "--help", cwd=tmp_path)
    for flag in ("--processes", "--threads", "--queues", "--broker", "--shutdown-timeout",
                 "--pid-file", "--log-file", "--log-level", "--watch", "--max-tasks-per-child",
                 "--metrics-port"):  # fmt: skip
        assert flag in run.stdout, flag


def test_module_that_fails_to_import_gives_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "broken_tasks.py").write_text("import not_a_real_module_anywhere\n")
    run = _actors("worker", "broken_tasks", "--broker", "memory://", cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0, run.stderr
    assert "broken_tasks" in run.stderr and "ModuleNotFoundError" in run.stderr
    assert "Traceback" not in run.stderr


def test_debug_log_level_shows_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "broken_tasks.py").write_text("raise RuntimeError('nope')\n")
    run = _actors("worker", "broken_tasks", "--log-level", "debug", "--broker", "memory://",
                  cwd=tmp_path)  # fmt: skip
    assert run.returncode == 2
    assert "Traceback" in run.stderr


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[psutil.Popen]:
    (tmp_path / "idle_tasks.py").write_text(
        textwrap.dedent("""
        import actors

        @actors.actor
        def nothing() -> None: ...
    """)
    )
    process = psutil.Popen(
        [sys.executable, "-m", "actors", "worker", "idle_tasks", "-p", "2", "--broker", "memory://",
         "--pid-file", str(tmp_path / "actors.pid")],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    yield process
    if process.is_running():
        process.kill()
    process.wait(10)


def test_supervisor_restarts_only_the_child_that_died_and_exits_0_on_sigterm(
    supervisor: psutil.Popen, tmp_path: Path
) -> None:
    children = wait_until(
        lambda: len(kids := supervisor.children()) == 2 and kids, timeout=30, message="two children"
    )
    assert (tmp_path / "actors.pid").read_text().strip() == str(supervisor.pid)
    victim, survivor = children
    victim.send_signal(signal.SIGKILL)
    wait_until(
        lambda: {c.pid for c in supervisor.children()} - {victim.pid, survivor.pid},
        message="a replacement child",
    )
    assert survivor.is_running()
    assert survivor.pid in {c.pid for c in supervisor.children()}

    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(30) == 0
    assert not (tmp_path / "actors.pid").exists()


def test_dlq_commands_list_show_replay_and_purge_on_rabbitmq(
    namespace: str, cleanups: Callable[[Callable[[], object]], None]
) -> None:
    from click.testing import CliRunner

    from actors.cli import main
    from actors.testing import running_worker
    from tests.brokers import RABBITMQ_URL, open_test_broker

    broker = actors.set_broker(open_test_broker("rabbitmq", namespace=namespace, cleanups=cleanups))
    queue = f"{namespace}-q"

    @actors.actor(queue=queue, max_retries=0)
    def doomed(n: int) -> None:
        raise LookupError(f"no such thing {n}")

    with running_worker(broker, threads=1):
        for n in range(3):
            doomed.send(n)
        wait_until(lambda: len(broker.dead_letters(queue)) == 3, message="three dead letters")

    runner = CliRunner()
    listed = runner.invoke(main, ["dlq", "list", "--broker", RABBITMQ_URL])
    assert f"{queue}.DLQ\t3" in listed.output
    shown = runner.invoke(main, ["dlq", "show", f"{queue}.DLQ", "--broker", RABBITMQ_URL])
    assert shown.exit_code == 0, shown.output
    assert "LookupError: no such thing" in shown.output and "doomed" in shown.output
    replayed = runner.invoke(
        main, ["dlq", "replay", queue, "--limit", "1", "--broker", RABBITMQ_URL]
    )
    assert "replayed 1 message" in replayed.output
    wait_until(lambda: broker.queue_depth(queue) == 1, message="one message back on the queue")
    refused = runner.invoke(main, ["dlq", "purge", queue, "--broker", RABBITMQ_URL], input="n\n")
    assert refused.exit_code != 0
    purged = runner.invoke(main, ["dlq", "purge", queue, "--yes", "--broker", RABBITMQ_URL])
    assert "purged 2 message" in purged.output
    assert broker.dead_letters(queue) == []
