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


@pytest.mark.parametrize("kind", ["rabbitmq", "redis"])
def test_dlq_commands_list_show_replay_and_purge(
    kind: str, namespace: str, cleanups: Callable[[Callable[[], object]], None]
) -> None:
    from click.testing import CliRunner

    from actors.cli import main
    from actors.testing import running_worker
    from tests.brokers import RABBITMQ_URL, REDIS_URL, open_test_broker

    broker = actors.set_broker(open_test_broker(kind, namespace=namespace, cleanups=cleanups))
    url = RABBITMQ_URL if kind == "rabbitmq" else f"{REDIS_URL}?namespace={namespace}"
    queue = f"{namespace}-q"

    @actors.actor(queue=queue, max_retries=0)
    def doomed(n: int) -> None:
        raise LookupError(f"no such thing {n}")

    with running_worker(broker, threads=1):
        for n in range(3):
            doomed.send(n)
        wait_until(lambda: len(broker.dead_letters(queue)) == 3, message="three dead letters")

    runner = CliRunner()
    listed = runner.invoke(main, ["dlq", "list", "--broker", url])
    assert f"{queue}.DLQ\t3" in listed.output
    shown = runner.invoke(main, ["dlq", "show", f"{queue}.DLQ", "--broker", url])
    assert shown.exit_code == 0, shown.output
    assert "LookupError: no such thing" in shown.output and "doomed" in shown.output
    replayed = runner.invoke(main, ["dlq", "replay", queue, "--limit", "1", "--broker", url])
    assert "replayed 1 message" in replayed.output
    wait_until(lambda: broker.queue_depth(queue) == 1, message="one message back on the queue")
    refused = runner.invoke(main, ["dlq", "purge", queue, "--broker", url], input="n\n")
    assert refused.exit_code != 0
    purged = runner.invoke(main, ["dlq", "purge", queue, "--yes", "--broker", url])
    assert "purged 2 message" in purged.output
    assert broker.dead_letters(queue) == []


def _start_worker(tmp_path: Path, *args: str) -> psutil.Popen:
    return psutil.Popen(
        [sys.executable, "-m", "actors", "worker", *args],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def test_max_tasks_per_child_recycles_children_and_loses_nothing(
    tmp_path: Path, namespace: str, cleanups: Callable[[Callable[[], object]], None]
) -> None:
    from tests.brokers import RABBITMQ_URL, open_test_broker

    queue = f"{namespace}-q"
    ledger = tmp_path / "ledger.txt"
    (tmp_path / "recycled_tasks.py").write_text(
        textwrap.dedent(f"""
        import os
        import actors

        @actors.actor(queue={queue!r})
        def note(n: int) -> None:
            with open({str(ledger)!r}, "a") as out:
                out.write(f"{{n}} {{os.getpid()}}\\n")
    """)
    )
    broker = actors.set_broker(open_test_broker("rabbitmq", namespace=namespace, cleanups=cleanups))
    process = _start_worker(
        tmp_path, "recycled_tasks", "-p", "1", "-t", "1", "--max-tasks-per-child", "3",
        "--broker", RABBITMQ_URL,
    )  # fmt: skip
    cleanups(lambda: process.kill() if process.is_running() else None)
    broker.enqueue_many([actors.Message(queue=queue, actor="note", args=(n,)) for n in range(10)])

    def lines() -> list[list[str]]:
        return [line.split() for line in ledger.read_text().splitlines()] if ledger.exists() else []

    wait_until(lambda: len({n for n, _ in lines()}) == 10, timeout=60, message="all ten ran")
    pids = {pid for _, pid in lines()}
    assert len(pids) >= 4  # at most three messages per child
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


def test_watch_restarts_the_workers_when_code_changes(tmp_path: Path) -> None:
    module = tmp_path / "watched_tasks.py"
    module.write_text("import actors\n\n@actors.actor\ndef nothing() -> None: ...\n")
    process = _start_worker(tmp_path, "watched_tasks", "-p", "1", "--broker", "memory://",
                            "--watch", str(tmp_path))  # fmt: skip
    try:
        [first] = wait_until(lambda: process.children(), timeout=30, message="a child")
        module.write_text(module.read_text() + "\n# changed\n")
        wait_until(
            lambda: {c.pid for c in process.children()} - {first.pid},
            timeout=30, message="a new child after the change",
        )  # fmt: skip
        assert process.is_running()  # the supervisor re-executed itself in place
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.is_running():
            process.kill()
            process.wait(10)


def test_children_shut_down_when_the_supervisor_is_killed(supervisor: psutil.Popen) -> None:
    children = wait_until(
        lambda: len(kids := supervisor.children()) == 2 and kids, timeout=30, message="children"
    )
    supervisor.kill()
    supervisor.wait(10)
    _gone, alive = psutil.wait_procs(children, timeout=30)
    assert alive == []
