"""The Celery app and task for the benchmarks; broker chosen by the environment.

    celery -A bench.tasks.celery_tasks worker --pool threads --concurrency 8 ...

``BENCH_BROKER`` = rabbitmq (default, py-amqp transport) or redis; ``BENCH_CONFIRM=1`` sets
``confirm_publish``. The queue (and its direct exchange) is ``BENCH_QUEUE``; on Redis every
key is prefixed with ``BENCH_PREFIX:`` (kombu ``global_keyprefix``). Results are ignored,
events and remote control are off. Prints ``BENCH_READY`` on ``worker_ready``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import redis
from celery import Celery, signals

QUEUE = os.environ["BENCH_QUEUE"]
_redis_broker = os.environ.get("BENCH_BROKER", "rabbitmq") == "redis"

app = Celery(
    "bench",
    broker=os.environ["BENCH_REDIS_URL"] if _redis_broker else os.environ["BENCH_AMQP_URL"],
)
_transport: dict[str, Any] = {}
if os.environ.get("BENCH_CONFIRM") == "1":
    _transport["confirm_publish"] = True
if _redis_broker:
    _transport["global_keyprefix"] = os.environ["BENCH_PREFIX"] + ":"
app.conf.update(
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    task_ignore_result=True,
    task_send_sent_event=False,
    worker_send_task_events=False,
    worker_enable_remote_control=False,
    broker_connection_retry_on_startup=True,
    broker_heartbeat=0,
    broker_transport_options=_transport,
)

_client: tuple[int, Any] | None = None


def _redis() -> Any:
    global _client
    if _client is None or _client[0] != os.getpid():
        _client = (os.getpid(), redis.Redis.from_url(os.environ["BENCH_REDIS_URL"]))
    return _client[1]


@app.task(name="bench.incr", ignore_result=True)
def incr(counter_key: str, notify_key: str | None = None) -> None:
    r = _redis()
    if notify_key:
        pipe = r.pipeline(transaction=False)
        pipe.incr(counter_key)
        pipe.rpush(notify_key, b"1")
        pipe.execute()
    else:
        r.incr(counter_key)


@signals.worker_ready.connect
def _ready(**_: Any) -> None:
    print("BENCH_READY", file=sys.stderr, flush=True)
