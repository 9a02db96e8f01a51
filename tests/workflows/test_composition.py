"""Pipelines, groups, chords and nesting, over every broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

import actors
from actors.backends.base import Backend
from actors.broker import Broker


def test_a_pipeline_of_three_steps_passes_each_result_on(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    @actors.actor(queue=namespace)
    def add(a: int, b: int) -> int:
        return a + b

    @actors.actor(queue=namespace)
    def double(x: int) -> int:
        return 2 * x

    start_worker()
    flow = actors.pipeline([add.message(1, 2), add.message(10), double.message()]).run()
    assert flow.get_result(block=True, timeout=10) == 26  # ((1 + 2) + 10) * 2


def test_a_step_can_ignore_the_previous_result(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    @actors.actor(queue=namespace)
    def constant(x: int) -> int:
        return x

    start_worker()
    flow = actors.pipeline(
        [constant.message(1), constant.message_with_options(args=(7,), pipe_ignore=True)]
    ).run()
    assert flow.get_result(block=True, timeout=10) == 7


def test_a_chord_over_100_members_fires_once_with_results_in_order(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    fired: list[list[int]] = []

    @actors.actor(queue=namespace)
    def square(x: int) -> int:
        return x * x

    @actors.actor(queue=namespace, store_results=True)
    def merge(results: list[int]) -> int:
        fired.append(results)
        return sum(results)

    start_worker(threads=8)
    callback = merge.message()
    chord = actors.group([square.message(i) for i in range(100)]).on_complete(callback).run()
    assert chord.get_results(timeout=30) == [i * i for i in range(100)]
    assert callback.get_result(block=True, timeout=30) == sum(i * i for i in range(100))
    broker.join(namespace, timeout=10)
    assert fired == [[i * i for i in range(100)]]


def test_a_failing_member_fails_the_group_at_once_and_skips_the_callback(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    fired: list[object] = []
    release = threading.Event()

    @actors.actor(queue=namespace, max_retries=0)
    def member(x: int) -> int:
        if x == 0:
            raise ValueError("bad member")
        release.wait(10)  # the others are still running when the failure is known
        return x

    @actors.actor(queue=namespace)
    def merge(results: list[int]) -> None:
        fired.append(results)

    start_worker(threads=4)
    members = actors.group([member.message(i) for i in range(3)]).on_complete(merge.message())
    members.run()
    started = time.monotonic()
    with pytest.raises(actors.ResultFailure) as failure:
        members.wait(timeout=10)
    assert time.monotonic() - started < 5
    assert failure.value.error_type == "ValueError"
    release.set()
    broker.join(namespace, timeout=10)
    assert fired == []


def test_a_pipeline_step_can_be_a_group(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    @actors.actor(queue=namespace)
    def add(a: int, b: int) -> int:
        return a + b

    @actors.actor(queue=namespace)
    def total(values: list[int]) -> int:
        return sum(values)

    start_worker()
    fan_out = actors.group([add.message(1), add.message(2), add.message(3)])
    flow = actors.pipeline([add.message(5, 5), fan_out, total.message()]).run()
    assert flow.get_result(block=True, timeout=10) == 11 + 12 + 13


def test_a_failing_pipeline_step_fails_get_result_at_once(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    ran: list[str] = []

    @actors.actor(queue=namespace, max_retries=0)
    def broken() -> None:
        raise KeyError("nope")

    @actors.actor(queue=namespace)
    def after(_: object) -> None:
        ran.append("after")

    start_worker()
    flow = actors.pipeline([broken.message(), after.message()]).run()
    with pytest.raises(actors.ResultFailure) as failure:
        flow.get_result(block=True, timeout=10)
    assert failure.value.error_type == "KeyError"
    assert ran == []


def test_a_chord_inside_a_pipeline_passes_its_callback_result_on(
    broker: Broker, backend: Backend, namespace: str, start_worker: Callable[..., actors.Worker]
) -> None:
    @actors.actor(queue=namespace)
    def square(x: int) -> int:
        return x * x

    @actors.actor(queue=namespace)
    def total(values: list[int]) -> int:
        return sum(values)

    @actors.actor(queue=namespace)
    def label(value: int) -> str:
        return f"total={value}"

    start_worker()
    chord = actors.group([square.message(i) for i in range(4)]).on_complete(total.message())
    flow = actors.pipeline([chord, label.message()]).run()
    assert flow.get_result(block=True, timeout=10) == "total=14"
    ends_in_group = actors.pipeline([square.message(3), actors.group([square.message()])]).run()
    assert ends_in_group.get_result(block=True, timeout=10) == [81]
