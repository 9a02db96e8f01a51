"""Poison and hostile input reaching a real worker process through the broker.

tests/contract/test_contract.py checks each bad body against an in-process worker per broker;
here the bytes go through RabbitMQ or Redis to an ``actors worker`` process while good messages
keep flowing, and every message is counted: each bad one is dead-lettered with its reason, each
good one runs, and the worker process is never replaced.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from actors import names
from actors.encoding import DEFAULT_MAX_MESSAGE_SIZE
from actors.testing import wait_until
from tests.faults.conftest import Target, WorkerFactory
from tests.faults.support import (
    assert_valid,
    final_report,
    record_messages,
    send_counted,
    wait_for_quiescence,
)
from tests.support.fixtures import LedgerFactory
from tests.support.ledger import Ledger

pytestmark = pytest.mark.faults


def _body(key: str, queue: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "v": names.WIRE_VERSION, "id": key, "queue": queue, "actor": "record",
        "args": [key], "kwargs": {}, "options": {}, "enqueued_at": 0.0, "priority": 0,
        "retries": 0,
    }  # fmt: skip
    data.update(changes)
    return data


def _nested(depth: int) -> list[Any]:
    tree: list[Any] = []
    for _ in range(depth):
        tree = [tree]
    return tree


def hostile_inputs(queue: str) -> dict[str, tuple[bytes, dict[str, Any] | None, str]]:
    """kind -> (body, headers, the expected dead-letter reason); message ids are ``bad-<kind>``."""

    def packed(kind: str, **changes: Any) -> bytes:
        return bytes(msgpack.packb(_body(f"bad-{kind}", queue, **changes)))

    valid = packed("truncated")
    no_actor = {k: v for k, v in _body("bad-missing-field", queue).items() if k != "actor"}
    huge_args = ["x" * (DEFAULT_MAX_MESSAGE_SIZE + 1)]
    return {
        "not-msgpack": (b"\xc1\xc1 this is not msgpack", None, "decode-error"),
        "truncated": (valid[: len(valid) // 2], None, "decode-error"),
        "deeply-nested": (packed("deeply-nested", args=[_nested(500)]), None, "decode-error"),
        "huge": (packed("huge", args=huge_args), None, "decode-error"),
        "missing-field": (bytes(msgpack.packb(no_actor)), None, "decode-error"),
        "ext-type": (bytes(msgpack.packb(msgpack.ExtType(42, b"boom"))), None, "decode-error"),
        "unknown-encoding": (
            packed("unknown-encoding"),
            {names.HEADER_ENCODING: "pickle"},
            "decode-error",
        ),
        "unknown-actor": (
            packed("unknown-actor", actor="nobody_declared_me"),
            None,
            "unknown-actor",
        ),
        "wrong-argument-count": (packed("wrong-argument-count", args=[]), None, "max-retries"),
    }


def _publish_hostile(target: Target, book: Ledger) -> dict[str, str]:
    """Publish every hostile input; return message id -> expected dead-letter reason."""
    expected: dict[str, str] = {}
    for kind, (body, headers, reason) in hostile_inputs(target.queue).items():
        message_id = f"bad-{kind}"
        target.broker.publish_raw(
            target.queue, body, {names.HEADER_ID: message_id, **(headers or {})}
        )
        book.record_send(message_id, "ok")
        expected[message_id] = reason
    return expected


def test_hostile_input_is_dead_lettered_while_good_messages_keep_flowing(
    target: Target, ledger: LedgerFactory, worker_process: WorkerFactory
) -> None:
    # Given a worker process taking good messages
    book = ledger()
    good = record_messages(target.queue, "good", 300)
    target.broker.declare_queue(target.queue)
    worker = worker_process(target.url, target.queue, book, threads=4)
    pid = worker.children()[0].pid
    send_counted(target.broker, good[:100], book, batch=50)

    # When hostile input arrives between good messages, plus a valid body with no headers at all
    expected = _publish_hostile(target, book)
    headerless = record_messages(target.queue, "headerless", 1)[0]
    target.broker.publish_raw(target.queue, target.broker.codec.pack(headerless).body, None)
    book.record_send(headerless.id, "ok")
    send_counted(target.broker, good[100:], book, batch=50)

    # Then every good message ran (the headerless one too: the body carries everything), every
    # hostile one is in the DLQ with its reason, and it was the same worker process throughout
    wait_for_quiescence(target.broker, target.queue, book, timeout=60)
    letters = wait_until(
        lambda: (
            len(found := target.broker.dead_letters(target.queue, limit=50)) >= len(expected)
            and found
        ),
        timeout=30,
        message="the dead letters",
    )
    assert [child.pid for child in worker.children()] == [pid], "the worker process was replaced"
    code, _ = worker.terminate()
    report = final_report(target.broker, target.queue, book, f"hostile input ({target.kind})")
    assert code == 0
    assert_valid(report)
    assert {letter.message_id: letter.reason for letter in letters} == expected
    assert report.processed == len(good) + 1
    assert report.duplicated == {}
    wrong_count = next(x for x in letters if x.message_id == "bad-wrong-argument-count")
    assert "TypeError" in wrong_count.error
    assert worker.log().count("Traceback") <= len(expected), "one traceback per bad message at most"
