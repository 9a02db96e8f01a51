"""Stored results: how they are encoded in the backend, and how callers wait for them.

A stored result is a msgpack map, one of::

    {"v": 1, "ok": <the actor's return value>}
    {"v": 1, "error": {"type": "ValueError", "message": "..."}}   -> ResultFailure
    {"v": 1, "missing": "<reason>"}                                -> ResultMissing

The third form is a tombstone: the message was dead-lettered without an exception of its own
(``max-age``, ``unknown-actor`` ...), so no result will ever come and waiters learn it at once
instead of waiting out their timeout.
"""

from __future__ import annotations

from typing import Any

import msgpack

from actors import registry
from actors.errors import ResultFailure, ResultMissing, ResultTimeout

#: How long ``get_result(block=True)`` waits when no timeout is given, in seconds.
DEFAULT_WAIT = 10.0


def encode_success(value: Any) -> bytes:
    """Encode a return value for the backend.

    Raises:
        TypeError, ValueError, OverflowError: msgpack cannot carry `value`.
    """
    packed: bytes = msgpack.packb({"v": 1, "ok": value}, use_bin_type=True, datetime=False)
    return packed


def encode_failure(error_type: str, error_message: str) -> bytes:
    """Encode the failure of an actor (its exception's type name and message)."""
    payload = {"v": 1, "error": {"type": error_type, "message": error_message}}
    packed: bytes = msgpack.packb(payload, use_bin_type=True)
    return packed


def encode_missing(reason: str) -> bytes:
    """Encode a tombstone: no result will come for the message, because of `reason`."""
    packed: bytes = msgpack.packb({"v": 1, "missing": reason}, use_bin_type=True)
    return packed


def decode(message_id: str, payload: bytes) -> Any:
    """Return the value in `payload`, or raise what it describes.

    Raises:
        ResultFailure: The actor failed.
        ResultMissing: The payload is a tombstone.
    """
    data = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    if "ok" in data:
        return data["ok"]
    if "error" in data:
        error = data["error"]
        raise ResultFailure(error["type"], error["message"], message_id=message_id)
    raise ResultMissing(f"no result will come for message {message_id}: {data.get('missing')}")


def wait_for_result(message_id: str, *, block: bool, timeout: float | None) -> Any:
    """Return the result of `message_id` from the process backend.

    Args:
        message_id: The message whose result to fetch.
        block: Wait until the result is stored (the backend blocks; nothing polls).
        timeout: The longest wait in seconds when blocking (default 10 s).

    Raises:
        ResultTimeout: Blocking, and no result arrived in time.
        ResultMissing: Not blocking and no result is stored (not yet, or it expired), or the
            message was dead-lettered in a way that leaves no result.
        ResultFailure: The actor failed; carries the error type and message.
    """
    backend = registry.get_backend()
    if not block:
        payload = backend.get_result(message_id)
        if payload is None:
            raise ResultMissing(
                f"no result stored for message {message_id} (not yet, expired, or the actor "
                "does not use store_results=True)"
            )
        return decode(message_id, payload)
    wait = DEFAULT_WAIT if timeout is None else timeout
    payload = backend.wait_result(message_id, wait)
    if payload is None:
        raise ResultTimeout(f"no result for message {message_id} within {wait}s")
    return decode(message_id, payload)


async def wait_for_result_async(message_id: str, *, timeout: float | None) -> Any:
    """Wait for the result of `message_id` without blocking the event loop.

    Raises:
        ResultTimeout: No result arrived within `timeout` seconds (default 10 s).
        ResultMissing: The message was dead-lettered in a way that leaves no result.
        ResultFailure: The actor failed.
    """
    wait = DEFAULT_WAIT if timeout is None else timeout
    payload = await registry.get_backend().wait_result_async(message_id, wait)
    if payload is None:
        raise ResultTimeout(f"no result for message {message_id} within {wait}s")
    return decode(message_id, payload)
