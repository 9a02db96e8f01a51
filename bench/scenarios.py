"""The scenarios, by stable name. The actors runner implements the same names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    name: str
    broker: str  # "rabbitmq" or "redis"
    n_full: int
    n_quick: int
    higher_is_better: bool
    raw_ref: str  # the raw-client system the "x raw" ratio compares against
    what: str

    @property
    def unit(self) -> str:
        return "msg/s" if self.higher_is_better else "ms p50"

    def n(self, quick: bool) -> int:
        return self.n_quick if quick else self.n_full


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        # 5,000 rather than 20,000: round-trip bound (~1 ms each), the rate is steady after a
        # few hundred, and 20,000 would take ~2 minutes per run for the four peers alone.
        Scenario(
            "send_confirm",
            "rabbitmq",
            5_000,
            1_000,
            True,
            "raw_pika",
            "enqueue rate, one thread, publisher confirms (actors: its default, streamed and all"
            " waited for at the end; the others wait for each)",
        ),
        Scenario(
            "send_confirm_wait",
            "rabbitmq",
            5_000,
            1_000,
            True,
            "raw_pika",
            "enqueue rate, one thread, send() waits for each confirm (wait_for_confirms=True)",
        ),
        Scenario(
            "send_noconfirm",
            "rabbitmq",
            20_000,
            2_000,
            True,
            "raw_pika",
            "enqueue rate, one thread, no publisher confirms",
        ),
        Scenario(
            "bulk_confirm",
            "rabbitmq",
            20_000,
            2_000,
            True,
            "raw_aiopika",
            "enqueue rate with confirms pipelined: chunks of 1000 in flight, then wait",
        ),
        Scenario(
            "drain_1x8",
            "rabbitmq",
            20_000,
            2_000,
            True,
            "raw_pika",
            "pre-filled backlog drained by 1 worker process x 8 threads (raw: 1 process)",
        ),
        Scenario(
            "drain_2x8",
            "rabbitmq",
            20_000,
            2_000,
            True,
            "raw_pika",
            "pre-filled backlog drained by 2 worker processes x 8 threads (raw: 2 processes)",
        ),
        Scenario(
            "drain_bare_1x8",
            "rabbitmq",
            20_000,
            2_000,
            True,
            "raw_pika",
            "drain_1x8 with an empty middleware stack (middleware=[]): the default stack's cost",
        ),
        # 10,000: the delay ladder makes the fill the slow part (~500-1,000 msg/s here).
        Scenario(
            "drain_delayed_1x8",
            "rabbitmq",
            10_000,
            1_000,
            True,
            "raw_pika",
            "sent with delay=1 s to a running 1 x 8 worker: msg/s from first due to all run",
        ),
        Scenario(
            "latency",
            "rabbitmq",
            500,
            100,
            False,
            "raw_pika",
            "sequential send -> task INCR+RPUSH -> driver BLPOP, end to end",
        ),
        Scenario(
            "latency_wait",
            "rabbitmq",
            500,
            100,
            False,
            "raw_pika",
            "latency with send() waiting for its confirm (actors: wait_for_confirms=True)",
        ),
        # Dramatiq's and raw pika's senders never wait for a confirm: for them this scenario is
        # their `latency`; actors sends with RabbitmqBroker(confirm_delivery=False) here.
        Scenario(
            "latency_noconfirm",
            "rabbitmq",
            500,
            100,
            False,
            "raw_pika",
            "latency with a sender that does not wait for publisher confirms (worker unchanged)",
        ),
        Scenario(
            "redis_drain_1x8",
            "redis",
            20_000,
            2_000,
            True,
            "raw_redis",
            "Redis broker: pre-filled backlog drained by 1 process x 8 threads (raw: 1)",
        ),
        Scenario(
            "redis_latency",
            "redis",
            500,
            100,
            False,
            "raw_redis",
            "Redis broker: sequential end-to-end latency",
        ),
    )
}
