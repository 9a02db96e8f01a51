"""Cancelling messages: `cancel(message_id)` marks a message so that workers drop it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors import names, registry

if TYPE_CHECKING:
    from actors.backends.base import Backend

#: How long a cancel mark is kept, in seconds (one day): a message taken later than that runs.
DEFAULT_CANCEL_TTL = 86400.0


def cancel(
    message_id: str, *, ttl: float = DEFAULT_CANCEL_TTL, backend: Backend | None = None
) -> None:
    """Cancel a message, wherever it is.

    - Queued or delayed: the worker that takes it skips it.
    - Running, async actor: its task is cancelled (``asyncio.CancelledError``).
    - Running, sync actor: `actors.Cancelled` is raised in its thread at the next bytecode
      boundary (C code and blocking calls finish first, as with time limits).

    Workers follow the log of cancels with one backend read every half second, so a message
    cancelled that long before a worker takes it never starts, and one cancelled later (or
    while it runs) is stopped within about half a second of starting. A cancelled
    message is dead-lettered with reason ``cancelled`` (no retry; ``get_result`` raises
    `actors.ResultFailure` with type ``Cancelled``; its status becomes ``cancelled``).
    Cancelling a message that already finished does nothing.

    Args:
        message_id: The message id (``message.id``).
        ttl: How long the cancel mark is kept, in seconds (default one day).
        backend: Where to write (default: the process backend).
    """
    backend = backend or registry.get_backend()
    backend.set_key(cancel_key(message_id), "1", ttl)
    backend.record_event(names.CANCEL_LOG_KEY, message_id, ttl)


def cancel_key(message_id: str) -> str:
    """The backend key that marks `message_id` as cancelled."""
    return names.CANCEL_KEY_PREFIX + message_id
