"""The CLI: actors status, actors cancel, actors scheduler (start, list, enable, run ...)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
import redis
from click.testing import CliRunner

import actors
from actors.backends.redis import RedisBackend
from actors.brokers.memory import MemoryBroker
from actors.cli import main
from tests.brokers import REDIS_URL

Cleanups = Callable[[Callable[[], object]], None]


@pytest.fixture
def shared_backend(cleanups: Cleanups) -> Iterator[RedisBackend]:
    """The Redis backend a CLI process sees with --backend (default namespace)."""
    backend = RedisBackend(url=REDIS_URL)
    actors.set_backend(backend)
    yield backend
    backend.close()


def _delete(*keys: str) -> None:
    with redis.Redis.from_url(REDIS_URL) as client:
        client.delete(*(f"actors:{key}" for key in keys))


def test_status_and_cancel_commands(
    shared_backend: RedisBackend, namespace: str, cleanups: Cleanups
) -> None:
    actors.set_broker(MemoryBroker())

    @actors.actor(queue=namespace)
    def job() -> None: ...

    message = job.send_with_options(delay=60)
    cleanups(lambda: _delete(f"status:{message.id}", f"cancel:{message.id}"))
    runner = CliRunner()
    shown = runner.invoke(main, ["status", message.id, "--backend", REDIS_URL])
    assert shown.exit_code == 0, shown.output
    assert "state: queued" in shown.output and "actor: job" in shown.output
    cancelled = runner.invoke(main, ["cancel", message.id, "--backend", REDIS_URL])
    assert cancelled.exit_code == 0, cancelled.output
    assert "state: cancelled" in runner.invoke(main, ["status", message.id]).output
    missing = runner.invoke(main, ["status", "f" * 32, "--backend", REDIS_URL])
    assert missing.exit_code == 1 and "StatusNotFound" in missing.output


def _cli(*args: str, name: str, queue: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SCHEDULED_APP_NAME": name, "SCHEDULED_APP_QUEUE": queue,
           "ACTORS_BROKER_URL": "memory://", "ACTORS_BACKEND_URL": REDIS_URL}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "actors", *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def test_scheduler_list_enable_disable_and_run(namespace: str, cleanups: Cleanups) -> None:
    cleanups(lambda: _delete(f"schedule:{namespace}:disabled"))
    app = "tests.workflows.scheduled_app"
    listed = _cli("scheduler", "list", app, name=namespace, queue=namespace)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith(f"{namespace}\tevery 3600s\tenabled\tnext=")
    assert _cli("scheduler", "disable", namespace, name=namespace, queue=namespace).returncode == 0
    assert "\tdisabled\t" in _cli("scheduler", "list", app, name=namespace, queue=namespace).stdout
    assert _cli("scheduler", "enable", namespace, name=namespace, queue=namespace).returncode == 0
    assert "\tenabled\t" in _cli("scheduler", "list", app, name=namespace, queue=namespace).stdout
    ran = _cli("scheduler", "run", namespace, app, name=namespace, queue=namespace)
    assert ran.returncode == 0 and ran.stdout.startswith("enqueued heartbeat["), ran.stderr


def test_the_scheduler_stops_cleanly_on_sigterm(namespace: str, cleanups: Cleanups) -> None:
    cleanups(lambda: _delete(f"schedule:{namespace}:last"))
    env = {**os.environ, "SCHEDULED_APP_NAME": namespace, "SCHEDULED_APP_QUEUE": namespace,
           "ACTORS_BROKER_URL": "memory://", "ACTORS_BACKEND_URL": REDIS_URL}  # fmt: skip
    with subprocess.Popen(
        [sys.executable, "-m", "actors", "scheduler", "tests.workflows.scheduled_app"],
        env=env, stderr=subprocess.PIPE, text=True,
    ) as process:  # fmt: skip
        assert process.stderr is not None
        for line in process.stderr:  # ends at EOF if it never starts; pytest's timeout bounds it
            if "scheduler running" in line:
                break
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert "scheduler stopped" in process.stderr.read()
