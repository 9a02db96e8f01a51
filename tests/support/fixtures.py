"""pytest fixtures for fault tests: private RabbitMQ and Redis servers, TCP proxies, ledgers.

Load them with ``pytest_plugins = ["tests.support.fixtures"]`` in the top-level conftest.py.
The session node is shared: a test that calls ``stop_app()`` must call ``start_app()`` before it
ends, and one that needs other broker settings should start its own ``PrivateRabbit``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from tests.support.ledger import Ledger
from tests.support.private_rabbit import PrivateRabbit
from tests.support.private_redis import PrivateRedis
from tests.support.tcp_proxy import TcpProxy


class RedisFactory(Protocol):
    """Starts a ``PrivateRedis``; every one is stopped when the test ends."""

    def __call__(self, *, appendonly: bool = True, fsync_always: bool = False) -> PrivateRedis: ...


class ProxyFactory(Protocol):
    """Starts a ``TcpProxy`` to 127.0.0.1:``target_port``; every one is stopped at test end."""

    def __call__(self, target_port: int) -> TcpProxy: ...


class LedgerFactory(Protocol):
    """Opens a ``Ledger`` in the test's temp dir; the same name gives the same file."""

    def __call__(self, name: str = "ledger") -> Ledger: ...


@pytest.fixture(scope="session")
def private_rabbit() -> Iterator[PrivateRabbit]:
    """One private RabbitMQ node for the whole session (~6-9 s to boot)."""
    with PrivateRabbit() as rabbit:
        yield rabbit


@pytest.fixture
def private_redis() -> Iterator[RedisFactory]:
    """Factory of private Redis servers, all stopped and deleted after the test."""
    servers: list[PrivateRedis] = []

    def make(*, appendonly: bool = True, fsync_always: bool = False) -> PrivateRedis:
        server = PrivateRedis(appendonly=appendonly, fsync_always=fsync_always)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def tcp_proxy() -> Iterator[ProxyFactory]:
    """Factory of started TCP proxies, all stopped after the test."""
    proxies: list[TcpProxy] = []

    def make(target_port: int) -> TcpProxy:
        proxy = TcpProxy(target_port)
        proxies.append(proxy)
        proxy.start()
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[LedgerFactory]:
    """Factory of ledgers stored in the test's temp dir, closed after the test."""
    opened: list[Ledger] = []

    def make(name: str = "ledger") -> Ledger:
        book = Ledger(tmp_path / f"{name}.sqlite3")
        opened.append(book)
        return book

    yield make
    for book in opened:
        book.close()
