"""Negative controls: faults that *do* lose messages, to prove the ledger sees a loss.

A checker that never reports a loss proves nothing. Each family of faults gets one setup where
RabbitMQ or Redis is known to drop acknowledged messages, and the same ledger, drain and check
as the real tests must report exactly those messages as lost.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pika
import pytest

from actors import names
from actors.brokers.rabbitmq import RabbitmqBroker
from actors.brokers.redis import RedisBroker
from actors.message import Message
from tests.faults.conftest import REDIS_CLAIM_AFTER, WorkerFactory
from tests.faults.support import final_report, record_messages, send_counted, wait_for_quiescence
from tests.support.fixtures import LedgerFactory, RedisFactory
from tests.support.private_rabbit import PrivateRabbit

pytestmark = pytest.mark.faults

Cleanups = Callable[[Callable[[], object]], None]
COUNT = 200
#: How long the drain may wait for messages that are gone (the worker needs ~0.1 s for 200).
LOSS_WAIT = 5.0


@pytest.mark.rabbitmq
def test_control_transient_messages_are_lost_across_a_rabbitmq_restart(
    private_rabbit: PrivateRabbit,
    ledger: LedgerFactory,
    worker_process: WorkerFactory,
    namespace: str,
    cleanups: Cleanups,
) -> None:
    # Given 200 persistent and 200 transient (delivery_mode 1) messages, all confirmed
    broker = RabbitmqBroker(url=private_rabbit.url, connect_timeout=20)
    queue, book = f"{namespace}-q", ledger()
    cleanups(broker.close)
    cleanups(lambda: broker.delete_queue(queue))
    cleanups(lambda: broker.delete_queue(names.dead_letter_queue(queue)))
    broker.declare_queue(queue)
    persistent = record_messages(queue, "persistent", COUNT)
    transient = record_messages(queue, "transient", COUNT)
    send_counted(broker, persistent, book, batch=COUNT)
    _publish_transient(private_rabbit.url, broker, transient)
    book.record_sends((message.id, "ok") for message in transient)

    # When RabbitMQ restarts (stop_app / start_app) before any worker ran
    private_rabbit.stop_app()
    private_rabbit.start_app()
    worker = worker_process(private_rabbit.url, queue, book, threads=4)
    wait_for_quiescence(broker, queue, book, timeout=LOSS_WAIT)
    worker.terminate()

    # Then the ledger reports every transient message lost, and only those
    report = final_report(broker, queue, book, "CONTROL transient messages, RabbitMQ restart")
    assert report.lost == frozenset(message.id for message in transient)
    assert report.processed == COUNT


def _publish_transient(url: str, broker: RabbitmqBroker, messages: list[Message[Any]]) -> None:
    """Publish with confirms but ``delivery_mode=1`` (transient): RabbitMQ does not keep them."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for message in messages:
            envelope = broker.codec.pack(message)
            properties = pika.BasicProperties(
                delivery_mode=pika.DeliveryMode.Transient,
                message_id=envelope.id,
                headers=dict(envelope.headers),
            )
            channel.basic_publish("", envelope.queue, envelope.body, properties, mandatory=True)
    finally:
        connection.close()


@pytest.mark.redis
def test_control_redis_without_persistence_loses_everything_on_restart(
    private_redis: RedisFactory,
    ledger: LedgerFactory,
    worker_process: WorkerFactory,
    namespace: str,
    cleanups: Cleanups,
) -> None:
    # Given a Redis with neither AOF nor RDB, holding 200 acknowledged messages
    server = private_redis(appendonly=False)
    queue, book = f"{namespace}-q", ledger()
    broker = RedisBroker(url=server.url, namespace=namespace, claim_after=REDIS_CLAIM_AFTER)
    cleanups(broker.close)
    messages = record_messages(queue, "volatile", COUNT)
    send_counted(broker, messages, book, batch=50)

    # When Redis restarts (a clean SIGTERM shutdown) before any worker ran
    server.restart(signal.SIGTERM)
    worker_url = f"{server.url}?namespace={namespace}&claim_after={REDIS_CLAIM_AFTER}"
    worker = worker_process(worker_url, queue, book, threads=4)
    wait_for_quiescence(broker, queue, book, timeout=LOSS_WAIT)
    worker.terminate()

    # Then the ledger reports all of them lost
    report = final_report(broker, queue, book, "CONTROL Redis without persistence, restart")
    assert report.lost == frozenset(message.id for message in messages)
