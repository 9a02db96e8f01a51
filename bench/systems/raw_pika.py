"""Raw pika: the floor for RabbitMQ with the blocking client (no framework)."""

from __future__ import annotations

import time
from typing import Any

from bench.common import (
    AMQP_URL,
    PYTHON,
    CpuWindow,
    DrainPlan,
    LatencyPlan,
    Names,
    WorkerGroup,
    amqp_channel,
    amqp_declare,
    amqp_delete,
    amqp_queue_state,
    measure_drain,
    measure_latency,
    measure_send,
    redis_cleanup,
    send_result,
)
from bench.systems.base import System
from bench.tasks.raw_workers import READY, encode

BULK_CHUNK = 1000


def persistent() -> Any:
    import pika

    return pika.BasicProperties(delivery_mode=2)


def fill_pika(queue: str, body: bytes, n: int) -> None:
    """Publish n persistent messages without confirms, then one round trip to sync."""
    props = persistent()
    with amqp_channel() as ch:
        for _ in range(n):
            ch.basic_publish("", queue, body, props)
        ch.queue_declare(queue, passive=True)  # the broker has handled every publish before it


def wait_queued(queue: str, n: int, timeout: float = 15.0) -> int:
    """How many messages reached the queue (waits up to ``timeout`` for n)."""
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count, _ = amqp_queue_state(queue)
        if count >= n:
            break
        time.sleep(0.1)
    return count


def raw_worker_group(kind: str, names: Names, procs: int) -> WorkerGroup:
    argv = [PYTHON, "-m", "bench.tasks.raw_workers", kind]
    env = names.worker_env(BENCH_PREFETCH="1000")
    return WorkerGroup([argv] * procs, env, f"raw_{kind}")


def raw_amqp_drain(kind: str, system: str, scenario: str, n: int, procs: int) -> dict[str, Any]:
    names = Names(system, scenario)
    amqp_declare(names.queue)
    body = encode(names.counter_key)
    plan = DrainPlan(
        start=lambda: raw_worker_group(kind, names, procs),
        ready_pattern=READY,
        ready_count=procs,
        fill=lambda k: fill_pika(names.queue, body, k),
        counter_key=names.counter_key,
        broker="rabbitmq",
        amqp_queue=names.queue,
        consumers=procs,
    )
    try:
        return measure_drain(n, plan)
    finally:
        amqp_delete([names.queue])
        redis_cleanup(names.prefix)


def raw_amqp_latency(kind: str, system: str, n: int) -> dict[str, Any]:
    """A raw worker of ``kind``; the driver publishes with one blocking pika channel."""
    import pika

    names = Names(system, "latency")
    amqp_declare(names.queue)
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    ch = conn.channel()
    body, props = encode(names.counter_key, names.notify_key), persistent()
    plan = LatencyPlan(
        start=lambda: raw_worker_group(kind, names, 1),
        ready_pattern=READY,
        ready_count=1,
        send=lambda: ch.basic_publish("", names.queue, body, props),
        notify_key=names.notify_key,
        broker="rabbitmq",
        amqp_queue=names.queue,
    )
    try:
        return measure_latency(n, plan)
    finally:
        conn.close()
        amqp_delete([names.queue])
        redis_cleanup(names.prefix)


class RawPika(System):
    name = "raw_pika"
    scenarios = frozenset(
        {
            "send_confirm",
            "send_confirm_wait",
            "send_noconfirm",
            "bulk_confirm",
            "drain_1x8",
            "drain_2x8",
            "latency",
            "latency_wait",
            "latency_noconfirm",
        }
    )
    packages = ("pika", "redis")

    def _send(self, scenario: str, n: int, confirm: bool) -> dict[str, Any]:
        import pika

        names = Names(self.name, scenario)
        amqp_declare(names.queue)
        try:
            conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
            ch = conn.channel()
            if confirm:
                ch.confirm_delivery()
            body, props, q = encode(names.counter_key), persistent(), names.queue

            def publish(_: int) -> None:
                ch.basic_publish("", q, body, props, mandatory=confirm)

            res = measure_send(n, publish, "rabbitmq", lambda: {"queued": wait_queued(q, n)})
            conn.close()
            return res
        finally:
            amqp_delete([names.queue])

    def scenario_send_confirm(self, n: int) -> dict[str, Any]:
        return self._send("send_confirm", n, confirm=True)

    def scenario_send_confirm_wait(self, n: int) -> dict[str, Any]:
        return self.scenario_send_confirm(n)  # one confirm per publish, waited for

    def scenario_send_noconfirm(self, n: int) -> dict[str, Any]:
        return self._send("send_noconfirm", n, confirm=False)

    def scenario_bulk_confirm(self, n: int) -> dict[str, Any]:
        """SelectConnection: publish a chunk of 1000, wait until all are confirmed, repeat."""
        names = Names(self.name, "bulk_confirm")
        amqp_declare(names.queue)
        try:
            res = _bulk_select(names.queue, encode(names.counter_key), n)
            res["queued"] = wait_queued(names.queue, n)
            return res
        finally:
            amqp_delete([names.queue])

    def scenario_drain_1x8(self, n: int) -> dict[str, Any]:
        return raw_amqp_drain("pika", self.name, "drain_1x8", n, procs=1)

    def scenario_drain_2x8(self, n: int) -> dict[str, Any]:
        return raw_amqp_drain("pika", self.name, "drain_2x8", n, procs=2)

    def scenario_latency(self, n: int) -> dict[str, Any]:
        return raw_amqp_latency("pika", self.name, n)

    def scenario_latency_wait(self, n: int) -> dict[str, Any]:
        return raw_amqp_latency("pika", self.name, n)  # it never waits for confirms

    def scenario_latency_noconfirm(self, n: int) -> dict[str, Any]:
        return raw_amqp_latency("pika", self.name, n)


def _bulk_select(queue: str, body: bytes, n: int) -> dict[str, Any]:
    import pika

    props = persistent()
    st: dict[str, Any] = {"sent": 0, "pending": set(), "nacked": 0, "returned": 0}

    def publish_chunk(ch: Any) -> None:
        k = min(BULK_CHUNK, n - st["sent"])
        base = st["sent"]
        for _ in range(k):
            ch.basic_publish("", queue, body, props, mandatory=True)
        st["pending"] = set(range(base + 1, base + k + 1))
        st["sent"] += k

    def on_confirm(frame: Any) -> None:
        m = frame.method
        if isinstance(m, pika.spec.Basic.Nack):
            st["nacked"] += 1
        if m.multiple:
            st["pending"] = {t for t in st["pending"] if t > m.delivery_tag}
        else:
            st["pending"].discard(m.delivery_tag)
        if not st["pending"]:
            if st["sent"] < n:
                publish_chunk(st["ch"])
            else:
                st["elapsed"] = time.perf_counter() - st["cpu"].t0
                st["client"] = st["cpu"].client_cpu()
                st["conn"].close()

    def on_channel(ch: Any) -> None:
        st["ch"] = ch
        ch.add_on_return_callback(lambda *a: st.__setitem__("returned", st["returned"] + 1))
        ch.confirm_delivery(on_confirm)
        st["cpu"] = CpuWindow("rabbitmq")
        publish_chunk(ch)

    conn = pika.SelectConnection(
        pika.URLParameters(AMQP_URL),
        on_open_callback=lambda c: c.channel(on_open_callback=on_channel),
        on_close_callback=lambda c, exc: c.ioloop.stop(),
    )
    st["conn"] = conn
    conn.ioloop.start()
    res = send_result(n, st["elapsed"], st["client"], st["cpu"])
    res.update(nacked=st["nacked"], returned=st["returned"], chunk=BULK_CHUNK)
    return res


SYSTEM = RawPika()
