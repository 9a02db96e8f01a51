"""The message: one call of one actor, as it travels through a broker."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

R = TypeVar("R")


def new_message_id() -> str:
    """Return a fresh random message id (32 hex characters)."""
    return os.urandom(16).hex()


@dataclass(slots=True)
class Message(Generic[R]):
    """One call of an actor: what to run, with which arguments, and how.

    Attributes:
        queue: The queue the message travels on.
        actor: The name of the actor to run.
        args: Positional arguments.
        kwargs: Keyword arguments.
        options: Per-message options (middleware options such as ``max_retries``).
        id: Unique id, kept across retries.
        enqueued_at: When the message was first enqueued, in Unix seconds.
        priority: 0..9, higher runs first.
        retries: How many times the message has been retried so far.
    """

    queue: str
    actor: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_message_id)
    enqueued_at: float = field(default_factory=time.time)
    priority: int = 0
    retries: int = 0

    def copy(self, **changes: Any) -> Message[R]:
        """Return a copy of this message with `changes` applied."""
        return replace(self, **changes)

    def get_result(self, *, block: bool = False, timeout: float | None = None) -> R:
        """Return the result that the actor stored for this message.

        Needs ``store_results=True`` on the actor and a results backend.

        Args:
            block: Wait for the result if it is not there yet.
            timeout: How long to wait, in seconds (default: 10 s when blocking).

        Raises:
            ResultTimeout: The wait ran out.
            ResultMissing: No result is stored and none is coming.
            ResultFailure: The actor failed; carries the error type and message.
        """
        from actors.results import wait_for_result

        return wait_for_result(self.id, block=block, timeout=timeout)  # type: ignore[no-any-return]

    async def get_result_async(self, *, timeout: float | None = None) -> R:
        """Wait for the result without blocking the event loop; see `get_result`."""
        from actors.results import wait_for_result_async

        return await wait_for_result_async(self.id, timeout=timeout)  # type: ignore[no-any-return]

    def set_progress(self, percent: float, text: str = "") -> None:
        """Record this message's progress (0-100) and a short text, for `actors.status`.

        Call it from the actor: ``actors.current_message().set_progress(50, "half way")``.
        One backend write per call.
        """
        from actors.status import set_progress

        set_progress(self.id, percent, text)

    def __str__(self) -> str:
        return f"{self.actor}[{self.id}]"
