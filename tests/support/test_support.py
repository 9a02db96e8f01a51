"""Tests of the fault-testing infrastructure itself: proxy, ledger, private Redis and RabbitMQ."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pika
import pika.exceptions
import pytest

from actors.testing import wait_until
from tests.support.ledger import Ledger
from tests.support.net import LOCALHOST, port_accepts
from tests.support.private_rabbit import PrivateRabbit

if TYPE_CHECKING:  # importing the plugin module before pytest registers it defeats its rewrite
    from tests.support.fixtures import LedgerFactory, ProxyFactory, RedisFactory

pytest_plugins = ["tests.support.fixtures"]

IO_TIMEOUT = 5.0


class EchoServer:
    """Echoes every byte back, remembers what it received and can push bytes unprompted."""

    def __init__(self) -> None:
        self._listener = socket.create_server((LOCALHOST, 0))
        self.port = int(self._listener.getsockname()[1])
        self.received = bytearray()
        self.resets = 0
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def push(self, data: bytes) -> None:
        """Send ``data`` from the server side on every open connection."""
        with self._lock:
            for connection in self._connections:
                connection.sendall(data)

    def close(self) -> None:
        """Stop accepting, close every connection and join the threads."""
        with self._lock:
            sockets = [self._listener, *self._connections]
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(IO_TIMEOUT)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._connections.append(connection)
                thread = threading.Thread(target=self._echo, args=(connection,), daemon=True)
                self._threads.append(thread)
            thread.start()

    def _echo(self, connection: socket.socket) -> None:
        try:
            while data := connection.recv(65536):
                with self._lock:
                    self.received += data
                connection.sendall(data)
        except ConnectionResetError:
            self.resets += 1
        except OSError:
            return


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    """A started echo server, closed after the test."""
    server = EchoServer()
    yield server
    server.close()


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read exactly ``size`` bytes (the socket's timeout bounds each read)."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def read_to_end(sock: socket.socket) -> bytes:
    """Read until the peer closes (the socket's timeout bounds each read)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def connect(port: int) -> socket.socket:
    """A client socket to 127.0.0.1:``port`` with bounded reads."""
    return socket.create_connection((LOCALHOST, port), timeout=IO_TIMEOUT)


def connect_and_read(port: int) -> bytes:
    """Connect and read to the end; a reset may surface in ``connect`` or in ``recv``."""
    with connect(port) as sock:
        return read_to_end(sock)


def test_proxy_forwards_and_cut_resets_both_sides(
    echo_server: EchoServer, tcp_proxy: ProxyFactory
) -> None:
    proxy = tcp_proxy(echo_server.port)
    with connect(proxy.port) as client:
        client.sendall(b"hello")
        assert recv_exactly(client, 5) == b"hello"
        proxy.cut()
        with pytest.raises(ConnectionResetError):
            client.recv(1)
    wait_until(
        lambda: echo_server.resets == 1, timeout=IO_TIMEOUT, message="the server to see a reset"
    )
    assert proxy.connections_accepted == 1
    wait_until(
        lambda: proxy.open_connections == 0, timeout=IO_TIMEOUT, message="the link to be dropped"
    )


def test_proxy_stall_holds_bytes_both_ways_until_resume(
    echo_server: EchoServer, tcp_proxy: ProxyFactory
) -> None:
    proxy = tcp_proxy(echo_server.port)
    with connect(proxy.port) as client:
        client.sendall(b"ping")
        assert recv_exactly(client, 4) == b"ping"
        proxy.stall()
        client.sendall(b"upstream")
        echo_server.push(b"downstream")
        client.settimeout(0.5)
        with pytest.raises(TimeoutError):
            client.recv(100)
        assert bytes(echo_server.received) == b"ping"
        proxy.resume()
        client.settimeout(IO_TIMEOUT)
        assert recv_exactly(client, 10 + 8) == b"downstream" + b"upstream"


def test_proxy_slow_delays_each_chunk(echo_server: EchoServer, tcp_proxy: ProxyFactory) -> None:
    proxy = tcp_proxy(echo_server.port)
    proxy.slow(0.2)
    with connect(proxy.port) as client:
        began = time.monotonic()
        client.sendall(b"x")
        assert recv_exactly(client, 1) == b"x"
        assert time.monotonic() - began >= 0.4
        proxy.slow(0)
        began = time.monotonic()
        client.sendall(b"y")
        assert recv_exactly(client, 1) == b"y"
        assert time.monotonic() - began < 0.2


def test_proxy_refuse_resets_new_connections_only(
    echo_server: EchoServer, tcp_proxy: ProxyFactory
) -> None:
    proxy = tcp_proxy(echo_server.port)
    with connect(proxy.port) as kept:
        kept.sendall(b"a")
        assert recv_exactly(kept, 1) == b"a"
        proxy.refuse(True)
        with pytest.raises(ConnectionResetError):
            connect_and_read(proxy.port)
        kept.sendall(b"b")
        assert recv_exactly(kept, 1) == b"b"
        proxy.refuse(False)
        with connect(proxy.port) as accepted:
            accepted.sendall(b"c")
            assert recv_exactly(accepted, 1) == b"c"
    assert (proxy.connections_accepted, proxy.connections_refused) == (3, 1)


def test_proxy_cut_after_bytes_cuts_mid_message(
    echo_server: EchoServer, tcp_proxy: ProxyFactory
) -> None:
    proxy = tcp_proxy(echo_server.port)
    with connect(proxy.port) as client:
        proxy.cut_after_bytes(10)
        client.sendall(bytes(range(100)))
        with pytest.raises(ConnectionResetError):
            read_to_end(client)
    wait_until(
        lambda: echo_server.resets == 1, timeout=IO_TIMEOUT, message="the server to see a reset"
    )
    assert bytes(echo_server.received) == bytes(range(10))


def test_ledger_reports_each_kind_of_anomaly(ledger: LedgerFactory) -> None:
    book = ledger()
    book.record_sends(
        [
            ("fine", "ok"),
            ("lost", "ok"),
            ("twice", "ok"),
            ("dead", "ok"),
            ("retried", "unknown"),
            ("retried", "ok"),
            ("recovered", "unknown"),
            ("maybe-lost", "unknown"),
            ("refused", "failed"),
            ("liar", "failed"),
        ]
    )
    book.record_processed_many(["fine", "twice", "twice", "twice", "retried", "recovered"])
    book.record_processed("liar")
    book.record_processed("stranger")
    book.record_dead_lettered("dead", "delivery_limit")

    report = book.check()

    assert (report.sent_ok, report.sent_unknown, report.sent_failed) == (5, 2, 2)
    assert report.lost == {"lost"}
    assert report.recovered == {"recovered"}
    assert report.unexpected == {"stranger"}
    assert report.failed_but_processed == {"liar"}
    assert report.duplicated == {"twice": 3}
    assert report.dead_lettered == {"dead": "delivery_limit"}
    assert not report.valid
    summary = report.summary()
    assert "lost: 1 e.g. ['lost']" in summary
    assert summary.endswith("INVALID")


def test_ledger_clean_history_is_valid(ledger: LedgerFactory) -> None:
    book = ledger()
    book.record_send("a", "ok")
    book.record_send("b", "unknown")
    book.record_processed("a")
    report = book.check()
    assert report.valid, report.summary()
    assert not (report.lost or report.recovered or report.duplicated)


def test_ledger_rejects_unknown_outcome(ledger: LedgerFactory) -> None:
    with pytest.raises(ValueError, match="outcome"):
        ledger().record_send("a", "maybe")  # type: ignore[arg-type]


def _record_runs(path: str, prefix: str, count: int) -> None:
    """Worker process: record ``count`` runs one transaction at a time."""
    book = Ledger(path)
    for n in range(count):
        book.record_processed(f"{prefix}-{n}")
    book.close()


def test_ledger_takes_writes_from_several_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    book = Ledger(path)
    writers, per_writer = 4, 500
    book.record_sends((f"w{w}-{n}", "ok") for w in range(writers) for n in range(per_writer))
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_record_runs, args=(path, f"w{w}", per_writer))
        for w in range(writers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [process.exitcode for process in processes] == [0] * writers
    book.record_processed("w0-0")
    report = book.check()
    book.close()
    assert report.processed == writers * per_writer
    assert report.lost == set()
    assert report.duplicated == {"w0-0": 2}


@pytest.mark.parametrize("appendonly", [True, False])
def test_private_redis_aof_survives_sigkill(private_redis: RedisFactory, appendonly: bool) -> None:
    server = private_redis(appendonly=appendonly)
    with server.client() as client:
        client.set("key", "value")
    server.kill(signal.SIGKILL)
    server.start()
    with server.client() as client:
        assert client.get("key") == (b"value" if appendonly else None)


def _publish_persistent(url: str, queue: str, body: bytes) -> None:
    """Declare a durable queue and publish one persistent message with confirms."""
    with pika.BlockingConnection(pika.URLParameters(url)) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue, durable=True)
        channel.basic_publish(
            "", queue, body, pika.BasicProperties(delivery_mode=2), mandatory=True
        )


def _pump_io(connection: pika.BlockingConnection, seconds: float) -> None:
    """Process the connection's I/O for ``seconds`` (raises once the broker closes it)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.1)


def test_private_rabbit_keeps_persistent_message_across_stop_app(
    private_rabbit: PrivateRabbit,
) -> None:
    _publish_persistent(private_rabbit.url, "support-durable", b"survivor")
    victim = pika.BlockingConnection(pika.URLParameters(private_rabbit.url))
    private_rabbit.close_all_connections("support test")
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker):
        _pump_io(victim, IO_TIMEOUT)

    private_rabbit.stop_app()
    assert not port_accepts(private_rabbit.port)
    private_rabbit.start_app()

    with pika.BlockingConnection(pika.URLParameters(private_rabbit.url)) as connection:
        channel = connection.channel()
        method, _, body = channel.basic_get("support-durable", auto_ack=True)
        assert method is not None
        assert body == b"survivor"
        channel.queue_delete("support-durable")


def test_private_rabbit_applies_settings_and_stops_cleanly() -> None:
    rabbit = PrivateRabbit(consumer_timeout_ms=5000, channel_tick_interval_ms=1000)
    with rabbit:
        environment = rabbit.ctl("environment")
        directory = rabbit.directory
        process_group = rabbit.process_group
    assert "{consumer_timeout,5000}" in environment
    assert "{channel_tick_interval,1000}" in environment
    assert "{loopback_users,[]}" in environment
    assert not directory.exists()
    assert not port_accepts(rabbit.port)
    with pytest.raises(ProcessLookupError):
        os.killpg(process_group, 0)
