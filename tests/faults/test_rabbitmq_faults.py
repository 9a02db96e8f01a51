"""RabbitMQ faults on a private node: closed connections, a stopped app, a broken network.

Every fault here is destructive, so it runs on the session's private node (PrivateRabbit) or
through a TcpProxy in front of it, never on the shared broker. The reconnect tests in
tests/test_rabbitmq.py check that things keep working; these count every message.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from actors import names
from actors.brokers.rabbitmq import RabbitmqBroker
from actors.errors import ConnectionFailed
from actors.testing import wait_until
from tests.faults.conftest import WorkerFactory
from tests.faults.support import (
    BackgroundSender,
    WorkerProcess,
    assert_valid,
    extra_runs,
    final_report,
    record_messages,
    send_counted,
    wait_for_quiescence,
)
from tests.support.fixtures import LedgerFactory, ProxyFactory
from tests.support.ledger import Ledger
from tests.support.private_rabbit import PrivateRabbit
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.faults, pytest.mark.rabbitmq]

HEARTBEAT = 1  # seconds, for the links that go through a proxy
CONSUMER_NOTICED = "consumer connection (missed heartbeats"


@dataclass(frozen=True)
class Node:
    """The private node, a producer connected to it directly, and the test's queue."""

    rabbit: PrivateRabbit
    broker: RabbitmqBroker
    queue: str

    def amqp_url(self, port: int, heartbeat: int | None = None) -> str:
        """An AMQP URL for `port` on 127.0.0.1 (the node's, or a proxy's)."""
        query = f"?heartbeat={heartbeat}" if heartbeat is not None else ""
        return f"amqp://guest:guest@127.0.0.1:{port}/{query}"


@pytest.fixture
def node(private_rabbit: PrivateRabbit, namespace: str) -> Iterator[Node]:
    broker = RabbitmqBroker(url=private_rabbit.url, connect_timeout=20, connection_name=namespace)
    queue = f"{namespace}-q"
    yield Node(private_rabbit, broker, queue)
    for name in (queue, names.dead_letter_queue(queue)):
        broker.delete_queue(name)
    broker.close()


def _counted_run_with_faults(
    node: Node,
    book: Ledger,
    worker_process: WorkerFactory,
    fault: str,
    connect_timeout: float,
    *,
    wait_for_confirms: bool = False,
) -> int:
    """A worker consumes while a sender sends; `fault` strikes three times mid-stream.

    Returns how many sends ended with an unknown outcome (and were sent again).
    """
    worker = worker_process(
        node.rabbit.url, node.queue, book, threads=4, env={"FAULT_WORK_SECONDS": "0.002"}
    )
    producer = RabbitmqBroker(
        url=node.rabbit.url, connect_timeout=connect_timeout, wait_for_confirms=wait_for_confirms
    )
    sender = BackgroundSender(producer, record_messages(node.queue, fault, 5000), book)
    sender.start()
    try:
        for _ in range(3):
            sender.wait_for(150)
            if fault == "close_all_connections":
                node.rabbit.close_all_connections()
            else:
                try:
                    node.rabbit.stop_app()
                    if wait_for_confirms:  # the outage lasts until a send has seen it
                        seen = sender.unknown_attempts
                        wait_until(
                            lambda seen=seen: sender.unknown_attempts > seen,  # type: ignore[misc]
                            timeout=30,
                            message="a send failing during the outage",
                        )
                finally:
                    node.rabbit.start_app()
        sender.wait_for(150)
    finally:
        sender.stop()
        producer.close()
    wait_for_quiescence(node.broker, node.queue, book, timeout=90)
    code, _ = worker.terminate()
    assert code == 0, worker.log()[-3000:]
    return sender.unknown


def test_close_all_connections_during_sends_and_consumption_loses_nothing(
    node: Node, ledger: LedgerFactory, worker_process: WorkerFactory
) -> None:
    book = ledger()
    unknown = _counted_run_with_faults(node, book, worker_process, "close_all_connections", 20)
    report = final_report(
        node.broker, node.queue, book, f"close_all_connections x3 ({unknown} unknown sends)"
    )
    assert_valid(report)
    assert report.sent_ok >= 600


def test_stop_app_and_start_app_during_sends_and_consumption_loses_nothing(
    node: Node, ledger: LedgerFactory, worker_process: WorkerFactory
) -> None:
    # connect_timeout 1 s is shorter than the outage, and send() waits for its confirm: sends
    # fail with ConnectionFailed (an unknown outcome), and the sender resends them with the
    # same id until they are confirmed. (Streamed sends, the default, resend by themselves:
    # the close_all_connections test and the cut-link test below count those.)
    book = ledger()
    unknown = _counted_run_with_faults(
        node, book, worker_process, "stop_app", 1, wait_for_confirms=True
    )
    report = final_report(
        node.broker, node.queue, book, f"stop_app/start_app x3 ({unknown} unknown sends)"
    )
    assert_valid(report)
    assert report.sent_ok >= 600
    assert unknown >= 3, "no send saw the outage"


def test_stalled_link_is_detected_by_heartbeats_and_nothing_hangs_or_is_lost(
    node: Node, ledger: LedgerFactory, worker_process: WorkerFactory, tcp_proxy: ProxyFactory
) -> None:
    # Given a worker and a producer that reach the node through proxies, heartbeat 1 s
    book = ledger()
    worker_link, producer_link = tcp_proxy(node.rabbit.port), tcp_proxy(node.rabbit.port)
    worker = worker_process(
        node.amqp_url(worker_link.port, HEARTBEAT), node.queue, book, threads=4,
        env={"FAULT_WORK_SECONDS": "0.01"},
    )  # fmt: skip
    proxied = RabbitmqBroker(url=node.amqp_url(producer_link.port, HEARTBEAT), connect_timeout=4)
    messages = record_messages(node.queue, "stall", 601)
    send_counted(node.broker, messages[:300], book, batch=100)
    wait_until(lambda: book.check().processed >= 50, timeout=30, message="50 runs")

    # When both links stall (half-open: nothing flows, nothing closes)
    accepted = worker_link.connections_accepted
    worker_link.stall()
    producer_link.stall()
    stalled_at = time.monotonic()
    try:
        # Then a send through the stalled link fails within its timeout instead of hanging
        with pytest.raises(ConnectionFailed):
            proxied.enqueue(messages[600])
        send_took = time.monotonic() - stalled_at
        book.record_send(messages[600].id, "unknown")
        # And the worker's consumer notices the dead peer by its heartbeats, then reconnects
        wait_until(
            lambda: CONSUMER_NOTICED in worker.log(), timeout=30, message="heartbeat timeout"
        )
        detected = time.monotonic() - stalled_at
        wait_until(
            lambda: worker_link.connections_accepted > accepted,
            timeout=30,
            message="the worker reconnecting",
        )
        reconnected = time.monotonic() - stalled_at
        send_counted(node.broker, messages[300:600], book, batch=100)
    finally:
        worker_link.resume()
        producer_link.resume()

    # And once the links flow again everything is processed, the unknown send included; only
    # what the stalled worker held (its prefetch: its acks never arrived) can run twice
    send_counted(proxied, [messages[600]], book)
    wait_for_quiescence(node.broker, node.queue, book, timeout=60)
    code, _ = worker.terminate()
    proxied.close()
    report = final_report(
        node.broker, node.queue, book,
        f"stalled link: heartbeat timeout after {detected:.1f}s, reconnect after "
        f"{reconnected:.1f}s, send failed after {send_took:.1f}s",
    )  # fmt: skip
    assert code == 0
    assert_valid(report)
    assert report.sent_ok == 601
    assert extra_runs(report) <= worker.prefetch
    assert send_took <= 4 + 6, f"send blocked {send_took:.1f}s"
    # the consumer gives up after two silent heartbeat intervals (checked every second)
    assert detected <= 2 * (HEARTBEAT + 5) + 3, f"dead peer noticed after {detected:.1f}s"
    # the reconnect declares the queue on a pooled producer link that went half-open too,
    # which takes one more heartbeat timeout to notice
    assert reconnected <= 4 * (HEARTBEAT + 5) + 3, f"reconnected after {reconnected:.1f}s"


def test_links_cut_mid_frame_or_slowed_reconnect_and_lose_nothing(
    node: Node, ledger: LedgerFactory, worker_process: WorkerFactory, tcp_proxy: ProxyFactory
) -> None:
    # Given a worker and a producer behind proxies, and 1 KiB messages (frames span chunks)
    book = ledger()
    worker_link, producer_link = tcp_proxy(node.rabbit.port), tcp_proxy(node.rabbit.port)
    worker = worker_process(
        node.amqp_url(worker_link.port), node.queue, book, threads=4,
        env={"FAULT_WORK_SECONDS": "0.002"},
    )  # fmt: skip
    proxied = RabbitmqBroker(url=node.amqp_url(producer_link.port), connect_timeout=20)
    messages = record_messages(node.queue, "frame", 1000, padding=1024)

    # When the producer's link is reset in the middle of a pipelined batch, twice
    for batch in (messages[:500], messages[500:]):
        producer_link.cut_after_bytes(200_001)
        send_counted(proxied, batch, book, batch=len(batch))
    # And the worker's link is slowed, then reset while it consumes
    worker_link.slow(0.02)
    wait_until(lambda: book.check().processed >= 300, timeout=60, message="300 runs")
    worker_link.slow(0)
    worker_link.cut()
    wait_until(lambda: book.check().processed >= 600, timeout=60, message="600 runs")
    worker_link.cut()

    # Then the producer resent what was unconfirmed, the worker reconnected, nothing is lost
    _all_processed_after_reconnects(
        node, book, worker, proxied, producer_link, "links cut mid-frame and slowed"
    )
    assert worker_link.connections_accepted >= 3, "the worker never reconnected"


def test_streamed_sends_on_a_cut_link_are_sent_again_and_lose_nothing(
    node: Node, ledger: LedgerFactory, worker_process: WorkerFactory, tcp_proxy: ProxyFactory
) -> None:
    # Given a worker on the node, and a producer behind a proxy whose send() returns before
    # the confirm (streamed confirms, the default)
    book = ledger()
    producer_link = tcp_proxy(node.rabbit.port)
    worker = worker_process(
        node.rabbit.url, node.queue, book, threads=4, env={"FAULT_WORK_SECONDS": "0.002"}
    )
    proxied = RabbitmqBroker(url=node.amqp_url(producer_link.port), connect_timeout=20)
    assert not proxied.settings.wait_for_confirms
    messages = record_messages(node.queue, "streamed", 1000, padding=512)

    # When the producer's link is reset twice while messages stream through it: what was
    # written after the cut never reached RabbitMQ, though send() returned for it
    for part in (messages[:500], messages[500:]):
        producer_link.cut_after_bytes(150_001)
        send_counted(proxied, part, book)
    proxied.flush()

    # Then the producer sent every unconfirmed message again, and each one was processed
    _all_processed_after_reconnects(
        node, book, worker, proxied, producer_link, "streamed sends over a cut link"
    )


def _all_processed_after_reconnects(
    node: Node,
    book: Ledger,
    worker: WorkerProcess,
    proxied: RabbitmqBroker,
    producer_link: TcpProxy,
    title: str,
) -> None:
    """Wait until all 1,000 sends ran, stop the worker, and check that nothing was lost."""
    wait_for_quiescence(node.broker, node.queue, book, timeout=60)
    code, _ = worker.terminate()
    proxied.close()
    report = final_report(node.broker, node.queue, book, title)
    assert code == 0
    assert_valid(report)
    assert report.sent_ok == 1000
    assert producer_link.connections_accepted >= 3, "the producer never reconnected"
