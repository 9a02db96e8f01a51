"""The Dramatiq actor for the benchmarks; broker chosen by the environment.

    dramatiq bench.tasks.dramatiq_tasks --processes P --threads T

``BENCH_BROKER`` = rabbitmq (default) or redis; ``BENCH_CONFIRM=1`` turns on publisher
confirms (RabbitMQ); ``BENCH_QUEUE`` names the queue, ``BENCH_PREFIX`` the Redis namespace.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
import redis

_client: tuple[int, Any] | None = None


def _redis() -> Any:
    global _client
    if _client is None or _client[0] != os.getpid():
        _client = (os.getpid(), redis.Redis.from_url(os.environ["BENCH_REDIS_URL"]))
    return _client[1]


if os.environ.get("BENCH_BROKER", "rabbitmq") == "redis":
    from dramatiq.brokers.redis import RedisBroker

    broker: dramatiq.Broker = RedisBroker(
        url=os.environ["BENCH_REDIS_URL"], namespace=os.environ["BENCH_PREFIX"]
    )
else:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker = RabbitmqBroker(
        url=os.environ["BENCH_AMQP_URL"],
        confirm_delivery=os.environ.get("BENCH_CONFIRM") == "1",
    )
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=os.environ["BENCH_QUEUE"], max_retries=0)
def incr(counter_key: str, notify_key: str | None = None) -> None:
    r = _redis()
    if notify_key:
        pipe = r.pipeline(transaction=False)
        pipe.incr(counter_key)
        pipe.rpush(notify_key, b"1")
        pipe.execute()
    else:
        r.incr(counter_key)
