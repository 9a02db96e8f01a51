"""Raw aio-pika: the asyncio client without a framework (robust connection, high-level API)."""

from __future__ import annotations

import time
from typing import Any

from bench.common import (
    AMQP_URL,
    CpuWindow,
    Names,
    amqp_declare,
    amqp_delete,
    send_result,
)
from bench.systems.base import System
from bench.systems.raw_pika import raw_amqp_drain, raw_amqp_latency, wait_queued
from bench.tasks.raw_workers import encode

BULK_CHUNK = 1000


async def _publish(
    queue: str, body: bytes, n: int, confirms: bool, chunk: int
) -> tuple[float, float, CpuWindow]:
    """chunk == 1: await each publish; chunk > 1: gather ``chunk`` publishes, then the next."""
    import asyncio

    import aio_pika

    conn = await aio_pika.connect_robust(AMQP_URL)
    try:
        ch = await conn.channel(publisher_confirms=confirms)
        ex = ch.default_exchange
        cpu = CpuWindow("rabbitmq")
        mode = aio_pika.DeliveryMode.PERSISTENT

        def msg() -> Any:
            return aio_pika.Message(body, delivery_mode=mode)

        cpu.restart_clock()
        if chunk == 1:
            for _ in range(n):
                await ex.publish(msg(), routing_key=queue, mandatory=confirms)
        else:
            for start in range(0, n, chunk):
                k = min(chunk, n - start)
                await asyncio.gather(
                    *(ex.publish(msg(), routing_key=queue, mandatory=True) for _ in range(k))
                )
        return time.perf_counter() - cpu.t0, cpu.client_cpu(), cpu
    finally:
        await conn.close()


class RawAioPika(System):
    name = "raw_aiopika"
    scenarios = frozenset(
        {"send_confirm", "send_noconfirm", "bulk_confirm", "drain_1x8", "latency"}
    )
    packages = ("aio-pika", "aiormq", "redis")

    def _send(self, scenario: str, n: int, confirms: bool, chunk: int) -> dict[str, Any]:
        import asyncio

        names = Names(self.name, scenario)
        amqp_declare(names.queue)
        try:
            body = encode(names.counter_key)
            elapsed, client, cpu = asyncio.run(_publish(names.queue, body, n, confirms, chunk))
            queued = wait_queued(names.queue, n)
            return send_result(n, elapsed, client, cpu) | {"queued": queued}
        finally:
            amqp_delete([names.queue])

    def scenario_send_confirm(self, n: int) -> dict[str, Any]:
        return self._send("send_confirm", n, confirms=True, chunk=1)

    def scenario_send_noconfirm(self, n: int) -> dict[str, Any]:
        return self._send("send_noconfirm", n, confirms=False, chunk=1)

    def scenario_bulk_confirm(self, n: int) -> dict[str, Any]:
        res = self._send("bulk_confirm", n, confirms=True, chunk=BULK_CHUNK)
        res["chunk"] = BULK_CHUNK
        return res

    def scenario_drain_1x8(self, n: int) -> dict[str, Any]:
        """One asyncio process, prefetch 1000, messages handled one by one (queue.iterator)."""
        return raw_amqp_drain("aiopika", self.name, "drain_1x8", n, procs=1)

    def scenario_latency(self, n: int) -> dict[str, Any]:
        """aio-pika worker; the driver publishes with blocking pika (as raw_pika's does)."""
        return raw_amqp_latency("aiopika", self.name, n)


SYSTEM = RawAioPika()
