"""Bare workers written directly on the clients: the floor a framework cannot pass.

    python -m bench.tasks.raw_workers pika|aiopika|redis|link

Configured by the environment (``BENCH_QUEUE``, ``BENCH_AMQP_URL``, ``BENCH_REDIS_URL``,
``BENCH_PREFETCH``, ``BENCH_GROUP``). Prints ``BENCH_READY`` once consuming. Message body:
``counter_key`` or ``counter_key\\nnotify_key``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any

READY = "BENCH_READY"


def encode(counter_key: str, notify_key: str | None = None) -> bytes:
    return (counter_key if notify_key is None else f"{counter_key}\n{notify_key}").encode()


def do_task(r: Any, body: bytes) -> None:
    """The task: one INCR (plus an RPUSH in the same round trip when a notify key is given)."""
    counter, _, notify = body.partition(b"\n")
    if notify:
        pipe = r.pipeline(transaction=False)
        pipe.incr(counter)
        pipe.rpush(notify, b"1")
        pipe.execute()
    else:
        r.incr(counter)


def _ready() -> None:
    print(READY, file=sys.stderr, flush=True)


def _sigterm_to_exit() -> None:
    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, handler)


def run_pika() -> None:
    import pika
    import redis

    r = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    conn = pika.BlockingConnection(pika.URLParameters(os.environ["BENCH_AMQP_URL"]))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=int(os.environ.get("BENCH_PREFETCH", "1000")))

    def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
        do_task(r, body)
        ch.basic_ack(method.delivery_tag)

    ch.basic_consume(os.environ["BENCH_QUEUE"], on_message)
    _sigterm_to_exit()
    _ready()
    try:
        ch.start_consuming()
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def run_link() -> None:
    """actors' own AMQP link with the task run inline on the reading thread, one ack each.

    No framework, no thread hand-off, frames parsed by actors' codec: the floor of a Python
    consumer on this machine (the latency no worker that runs its actors off the reading
    thread can beat).
    """
    import pika
    import redis

    from actors.brokers.rabbitmq import _amqp_codec as wire
    from actors.brokers.rabbitmq._amqp_link import CHANNEL, AmqpLink

    r = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])

    class Inline:
        def on_deliver(
            self, consumer_tag: str, tag: int, redelivered: bool, props: Any, body: bytes
        ) -> None:
            do_task(r, body)
            link.send_frames(wire.ack_frame(CHANNEL, tag, False))

        def on_return(self, *args: Any) -> None:
            pass

        def on_confirm(self, *args: Any) -> None:
            pass

        def on_cancelled(self, consumer_tag: str) -> None:
            raise SystemExit(f"consumer {consumer_tag} cancelled")

        def on_tick(self) -> None:
            pass

    link = AmqpLink(pika.URLParameters(os.environ["BENCH_AMQP_URL"]), Inline())
    link.open()
    prefetch = int(os.environ.get("BENCH_PREFETCH", "1000"))
    link.call(wire.BASIC_QOS, wire.qos(prefetch), wire.BASIC_QOS_OK)
    consume = wire.consume(os.environ["BENCH_QUEUE"], f"floor.{os.getpid()}")
    link.call(wire.BASIC_CONSUME, consume, wire.BASIC_CONSUME_OK)
    _sigterm_to_exit()
    _ready()
    try:
        link.run()
    finally:
        link.close(timeout=1.0)


async def _aiopika_main() -> None:
    import asyncio

    import aio_pika
    import redis.asyncio as aredis

    r = aredis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    conn = await aio_pika.connect(os.environ["BENCH_AMQP_URL"])
    ch = await conn.channel()
    await ch.set_qos(prefetch_count=int(os.environ.get("BENCH_PREFETCH", "1000")))
    queue = await ch.declare_queue(os.environ["BENCH_QUEUE"], durable=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def consume() -> None:
        async with queue.iterator() as it:
            _ready()
            async for message in it:
                counter, _, notify = message.body.partition(b"\n")
                if notify:
                    pipe = r.pipeline(transaction=False)
                    pipe.incr(counter)
                    pipe.rpush(notify, b"1")
                    await pipe.execute()
                else:
                    await r.incr(counter)
                await message.ack()

    task = asyncio.create_task(consume())
    await stop.wait()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    await conn.close()
    await r.aclose()


def run_aiopika() -> None:
    import asyncio

    asyncio.run(_aiopika_main())


def run_redis() -> None:
    """XREADGROUP COUNT 100 (blocking), one INCR per message, one XACK per batch."""
    import redis

    r = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    stream = os.environ["BENCH_QUEUE"]
    group = os.environ.get("BENCH_GROUP", "workers")
    consumer = f"c{os.getpid()}"
    _sigterm_to_exit()
    _ready()
    while True:
        got = r.xreadgroup(group, consumer, {stream: ">"}, count=100, block=1000)
        if not got:
            continue
        entries = got[0][1]
        for _id, fields in entries:
            do_task(r, fields[b"b"])
        r.xack(stream, group, *[e[0] for e in entries])


if __name__ == "__main__":
    kinds = {"pika": run_pika, "aiopika": run_aiopika, "redis": run_redis, "link": run_link}
    kinds[sys.argv[1]]()
