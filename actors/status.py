"""Message status and progress: what became of a message, read with `status(message_id)`.

The `Status` middleware writes one backend hash per message id, once per transition (queued,
running, retrying, and the final state), with a TTL (default one day). Actors add progress
with ``actors.current_message().set_progress(percent, text)``.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actors import names, registry
from actors.errors import StatusNotFound

if TYPE_CHECKING:
    from actors.backends.base import Backend

#: How long a status is kept after its last change, in seconds (one day).
DEFAULT_STATUS_TTL = 86400.0


class State(enum.StrEnum):
    """The states of a message; the last four are final."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # dead-lettered because the actor raised (retries exhausted, Fail ...)
    DEAD_LETTERED = "dead-lettered"  # dead-lettered without an error of the actor (max-age ...)
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({State.SUCCEEDED, State.FAILED, State.DEAD_LETTERED, State.CANCELLED})


@dataclass(frozen=True, slots=True)
class MessageStatus:
    """The status of one message, as stored by the `Status` middleware.

    Attributes:
        message_id: The message id.
        state: Where the message is (`State`).
        progress: 0-100, as last reported by the actor (100 once it succeeded).
        progress_text: The text given with the last progress report.
        attempts: Runs started so far (1 for the first run, 2 after one retry ...).
        actor: The actor's name.
        queue: The queue.
        enqueued_at: When it was first enqueued, Unix seconds (None if unknown).
        started_at: When its last run started, Unix seconds.
        finished_at: When it reached its final state, Unix seconds.
        updated_at: When the status last changed, Unix seconds.
        error: The last error (``Type: message``), if any.
        reason: The dead-letter reason of a failed, dead-lettered or cancelled message.
        cancel_requested: `cancel()` was called for this message.
    """

    message_id: str
    state: State
    progress: float = 0.0
    progress_text: str = ""
    attempts: int = 0
    actor: str = ""
    queue: str = ""
    enqueued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    error: str = ""
    reason: str = ""
    cancel_requested: bool = False

    @property
    def is_final(self) -> bool:
        """True once the message succeeded, failed, was dead-lettered or cancelled."""
        return self.state in FINAL_STATES

    def result(self) -> Any:
        """Return the stored result (needs ``store_results``); see `Message.get_result`.

        Raises:
            ResultMissing: No result is stored (yet).
            ResultFailure: The actor failed.
        """
        from actors.results import wait_for_result

        return wait_for_result(self.message_id, block=False, timeout=None)

    @classmethod
    def from_fields(cls, message_id: str, fields: dict[str, str], cancelled: bool) -> MessageStatus:
        """Build a status from its stored hash (and whether a cancel mark exists)."""
        state = State(fields.get("state", State.QUEUED))
        if cancelled and state in (State.QUEUED, State.RETRYING):
            # not taken yet: a worker will skip it, so it is as good as cancelled now
            state = State.CANCELLED
        return cls(
            message_id=message_id,
            state=state,
            progress=float(fields.get("progress", 0)),
            progress_text=fields.get("progress_text", ""),
            attempts=int(fields.get("attempts", 0)),
            actor=fields.get("actor", ""),
            queue=fields.get("queue", ""),
            enqueued_at=_time(fields.get("enqueued_at")),
            started_at=_time(fields.get("started_at")),
            finished_at=_time(fields.get("finished_at")),
            updated_at=_time(fields.get("updated_at")),
            error=fields.get("error", ""),
            reason=fields.get("reason", ""),
            cancel_requested=cancelled,
        )


def status(message_id: str, *, backend: Backend | None = None) -> MessageStatus:
    """Return the status of a message.

    Args:
        message_id: The message id (``message.id``).
        backend: Where to read (default: the process backend).

    Raises:
        StatusNotFound: Nothing is stored for this id (unknown, expired, or not tracked).
    """
    backend = backend or registry.get_backend()
    fields = backend.get_status(message_id)
    if fields is None:
        raise StatusNotFound(message_id)
    [cancel_mark] = backend.get_keys([names.CANCEL_KEY_PREFIX + message_id])
    return MessageStatus.from_fields(message_id, fields, cancel_mark is not None)


def set_progress(message_id: str, percent: float, text: str = "") -> None:
    """Record the progress of a message (what ``Message.set_progress`` calls).

    Args:
        message_id: The message id.
        percent: 0-100 (clamped).
        text: A short description of the current step.
    """
    from actors.middleware.status import Status

    fields = {
        "progress": f"{min(100.0, max(0.0, float(percent))):g}",
        "progress_text": text,
        "updated_at": f"{time.time():.6f}",
    }
    tracker = registry.get_broker().get_middleware(Status)
    if isinstance(tracker, Status):
        tracker.write_through(message_id, fields)  # lands after "running", never before
    else:
        registry.get_backend().put_statuses([(message_id, fields)], DEFAULT_STATUS_TTL)


def _time(value: str | None) -> float | None:
    return float(value) if value else None
