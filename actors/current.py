"""Access to the message being processed, from inside an actor."""

from __future__ import annotations

from typing import Any

from actors.message import Message
from actors.worker import current_delivery


def current_message() -> Message[Any] | None:
    """Return the message that the calling actor is processing, or None outside an actor.

    Works in sync actors (per thread) and async actors (per task).
    """
    delivery = current_delivery()
    return None if delivery is None else delivery.message
