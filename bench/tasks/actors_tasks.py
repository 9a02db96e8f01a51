"""The `actors` actor for the benchmarks; broker chosen by the environment.

    actors worker bench.tasks.actors_tasks -p P -t T [--broker URL]

``BENCH_BROKER`` = rabbitmq (default) or redis; ``BENCH_CONFIRM=0`` turns publisher confirms
off and ``BENCH_CONFIRM=wait`` makes ``send()`` wait for each (RabbitMQ; by default confirms are
on and streamed, as in the library); ``BENCH_MIDDLEWARE=bare`` builds the broker
with ``middleware=[]`` instead of the default stack; ``BENCH_QUEUE`` names the queue,
``BENCH_PREFIX`` the Redis namespace. The worker CLI is normally run with ``--broker URL`` (a
default-configured broker, as a README user gets); the bare variant runs without it so that the
broker built here (with no middleware) is the one the worker uses.
"""

from __future__ import annotations

import os
from typing import Any

import redis

import actors

_client: tuple[int, Any] | None = None


def _redis() -> Any:
    global _client
    if _client is None or _client[0] != os.getpid():
        _client = (os.getpid(), redis.Redis.from_url(os.environ["BENCH_REDIS_URL"]))
    return _client[1]


def broker_url() -> str:
    """The URL a default-configured broker for this benchmark is built from."""
    if os.environ.get("BENCH_BROKER", "rabbitmq") == "redis":
        return f"{os.environ['BENCH_REDIS_URL']}?namespace={os.environ['BENCH_PREFIX']}"
    return os.environ["BENCH_AMQP_URL"]


def _make_broker() -> actors.Broker:
    options: dict[str, Any] = {}
    if os.environ.get("BENCH_MIDDLEWARE") == "bare":
        options["middleware"] = []
    if os.environ.get("BENCH_BROKER", "rabbitmq") == "redis":
        from actors.brokers.redis import RedisBroker

        return RedisBroker(url=broker_url(), **options)
    from actors.brokers.rabbitmq import RabbitmqBroker

    confirm = os.environ.get("BENCH_CONFIRM", "1")
    return RabbitmqBroker(
        url=broker_url(),
        confirm_delivery=confirm != "0",
        wait_for_confirms=confirm == "wait",
        **options,
    )


broker = actors.set_broker(_make_broker())


@actors.actor(queue=os.environ["BENCH_QUEUE"])
def incr(counter_key: str, notify_key: str | None = None) -> None:
    r = _redis()
    if notify_key:
        pipe = r.pipeline(transaction=False)
        pipe.incr(counter_key)
        pipe.rpush(notify_key, b"1")
        pipe.execute()
    else:
        r.incr(counter_key)
