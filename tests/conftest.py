"""Shared fixtures: real services checked once, per-test namespaces, broker factories."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator

import pytest

from actors import registry
from actors.broker import Broker
from tests.brokers import open_test_broker

pytest_plugins = ["tests.support.fixtures"]

SERVICES = {
    "RabbitMQ": (5672, "rabbitmq-server -detached"),
    "Redis": (
        6379,
        'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
    ),
}


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def _services_up() -> None:
    """Fail loudly (never skip) when a service the suite needs is down."""
    down = [f"{name} on 127.0.0.1:{port} (start: {cmd})" for name, (port, cmd) in SERVICES.items()
            if not _answers(port)]  # fmt: skip
    if down:
        pytest.fail("services down: " + "; ".join(down), pytrace=False)


@pytest.fixture(autouse=True)
def _clean_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no actors, no broker, no backend and no ACTORS_* variables."""
    for name in list(os.environ):
        if name.startswith("ACTORS_"):
            monkeypatch.delenv(name)
    registry.reset()
    yield
    registry.reset()


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """A short name unique to this test, for queues and keys."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40].strip("-")
    return f"t-{base}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def cleanups() -> Iterator[Callable[[Callable[[], object]], None]]:
    """Register cleanups that run in LIFO order after the test."""
    stack: list[Callable[[], object]] = []
    yield stack.append
    while stack:
        stack.pop()()


@pytest.fixture(params=["memory", "rabbitmq", "redis"])
def broker(
    request: pytest.FixtureRequest,
    namespace: str,
    cleanups: Callable[[Callable[[], object]], None],
) -> Broker:
    """A broker of each kind, isolated under `namespace`, set as the process broker."""
    made = open_test_broker(request.param, namespace=namespace, cleanups=cleanups)
    registry.set_broker(made)
    return made
