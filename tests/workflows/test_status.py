"""Status and progress: states through a message's life, progress while it runs."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

import actors
from actors.backends.base import Backend
from actors.broker import Broker
from actors.testing import wait_until


def test_progress_can_be_read_while_the_actor_runs(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    release = threading.Event()

    @actors.actor(queue=namespace)
    def long_job() -> None:
        message = actors.current_message()
        assert message is not None
        message.set_progress(40, "copying files")
        release.wait(10)

    message = long_job.send()
    assert actors.status(message.id).state == actors.State.QUEUED
    start_worker()
    running = wait_until(
        lambda: (s := actors.status(message.id)).progress == 40 and s, message="progress 40"
    )
    assert (running.state, running.progress_text, running.attempts) == (
        "running", "copying files", 1)  # fmt: skip
    assert running.started_at is not None
    release.set()
    done = wait_until(lambda: (s := actors.status(message.id)).is_final and s, message="final")
    assert (done.state, done.progress) == (actors.State.SUCCEEDED, 100)
    assert done.finished_at is not None and done.enqueued_at is not None


def test_a_message_that_keeps_failing_ends_failed_with_its_error(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    @actors.actor(queue=namespace, max_retries=1, min_backoff=0.01, max_backoff=0.01)
    def broken() -> None:
        raise RuntimeError("still broken")

    start_worker()
    message = broken.send()
    final = wait_until(lambda: (s := actors.status(message.id)).is_final and s, message="final")
    assert (final.state, final.attempts, final.reason) == ("failed", 2, "max-retries")
    assert final.error == "RuntimeError: still broken"


def test_an_unknown_id_has_no_status(broker: Broker, backend: Backend) -> None:
    with pytest.raises(actors.StatusNotFound):
        actors.status("0" * 32)


def test_status_tracking_can_be_turned_off_per_actor(
    broker: Broker, backend: Backend, namespace: str
) -> None:
    @actors.actor(queue=namespace, track_status=False)
    def quiet() -> None: ...

    message = quiet.send()
    with pytest.raises(actors.StatusNotFound):
        actors.status(message.id)
