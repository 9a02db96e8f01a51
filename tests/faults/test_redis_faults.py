"""Redis restarts under the Redis broker, on a private Redis with append-only persistence.

Behaviour checked (and documented in docs/reliability.md): with ``appendonly yes``, a Redis
that is killed (SIGKILL, ``appendfsync always``) or shut down (SIGTERM, ``everysec``: Redis
fsyncs on a clean shutdown) while producers send and a worker consumes loses nothing.
Producers retry with the same message id for ``connection_timeout``; workers reconnect and
settle what they held, since a Redis consumer's pending entries survive in the AOF.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from actors.brokers.redis import RedisBroker
from tests.faults.conftest import REDIS_CLAIM_AFTER, WorkerFactory
from tests.faults.support import (
    BackgroundSender,
    assert_valid,
    final_report,
    record_messages,
    wait_for_quiescence,
)
from tests.support.fixtures import LedgerFactory, RedisFactory

pytestmark = [pytest.mark.faults, pytest.mark.redis]


@pytest.mark.parametrize(
    ("sig", "fsync_always"),
    [(signal.SIGKILL, True), (signal.SIGTERM, False)],
    ids=["sigkill-fsync-always", "sigterm-fsync-everysec"],
)
def test_redis_restart_during_sends_and_consumption_loses_nothing(
    private_redis: RedisFactory,
    ledger: LedgerFactory,
    worker_process: WorkerFactory,
    cleanups: Callable[[Callable[[], object]], None],
    namespace: str,
    sig: signal.Signals,
    fsync_always: bool,
) -> None:
    # Given a private Redis with AOF, a worker consuming and a producer sending
    server = private_redis(appendonly=True, fsync_always=fsync_always)
    queue, book = f"{namespace}-q", ledger()
    broker = RedisBroker(
        url=server.url, namespace=namespace, claim_after=REDIS_CLAIM_AFTER, connection_timeout=20
    )
    cleanups(broker.close)
    worker_url = f"{server.url}?namespace={namespace}&claim_after={REDIS_CLAIM_AFTER}"
    worker = worker_process(worker_url, queue, book, threads=4, env={"FAULT_WORK_SECONDS": "0.002"})
    sender = BackgroundSender(broker, record_messages(queue, "redis", 5000), book).start()

    # When Redis is restarted twice mid-stream
    try:
        for _ in range(2):
            sender.wait_for(200)
            server.restart(sig)
        sender.wait_for(200)
    finally:
        sender.stop()

    # Then every confirmed send ran (or was dead-lettered), and the worker exits cleanly
    wait_for_quiescence(broker, queue, book, timeout=60)
    code, _ = worker.terminate()
    report = final_report(broker, queue, book, f"Redis restart x2 ({sig.name}, AOF)")
    assert code == 0, worker.log()[-3000:]
    assert_valid(report)
    assert report.sent_ok >= 600
