"""Dead letters as operators see them: decoded for display, cleaned up for replay.

Shared by every broker, so that ``actors dlq show`` reads the same on each.
"""

from __future__ import annotations

from typing import Any

from actors import names
from actors.broker import Broker, DeadLetter

#: Headers of a dead letter that are dropped when it is replayed onto its queue.
REPLAY_DROPPED = (
    names.HEADER_DEAD_REASON,
    names.HEADER_ERROR_TYPE,
    names.HEADER_ERROR,
    names.HEADER_FAILED_AT,
    names.HEADER_ORIGINAL_QUEUE,
    names.HEADER_DELIVERIES,
)


def replay_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """Headers of a dead letter put back on its queue: the failure fields removed."""
    return {key: value for key, value in headers.items() if key not in REPLAY_DROPPED}


def describe_dead_letter(broker: Broker, body: bytes, headers: dict[str, Any]) -> DeadLetter:
    """Decode a dead letter for display; undecodable bodies are shown by their headers."""
    try:
        message = broker.codec.unpack(body, headers)
        args: Any = list(message.args)
        kwargs: Any = message.kwargs
    except Exception as exc:
        args, kwargs = f"<undecodable: {exc}>", {}
    return DeadLetter(
        message_id=str(headers.get(names.HEADER_ID, "?")),
        actor=str(headers.get(names.HEADER_ACTOR, "?")),
        queue=str(headers.get(names.HEADER_ORIGINAL_QUEUE, headers.get(names.HEADER_QUEUE, "?"))),
        args=args,
        kwargs=kwargs,
        retries=int(headers.get(names.HEADER_RETRIES, 0) or 0),
        reason=str(headers.get(names.HEADER_DEAD_REASON, "")),
        error=": ".join(
            str(part)
            for part in (headers.get(names.HEADER_ERROR_TYPE), headers.get(names.HEADER_ERROR))
            if part
        ),
        failed_at=str(headers.get(names.HEADER_FAILED_AT, "")),
        body_size=len(body),
    )
