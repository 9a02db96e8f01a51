"""Workflows: moves pipelines and groups on as their steps finish (see `actors.workflows`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from actors import registry, workflows
from actors.delivery import Outcome
from actors.middleware.base import Middleware

if TYPE_CHECKING:
    from actors.actor import Actor
    from actors.broker import Broker
    from actors.delivery import Delivery, Failure


class Workflows(Middleware):
    """Enqueues the next pipeline step, and the chord callback of a completed group.

    After a successful run, a message that carries ``pipe_next`` enqueues the next step with
    its result; a group member counts itself done in the backend (an atomic set add), and the
    member that completes the group marks it done and sends what follows (chord callback or
    next pipeline step) exactly once. After a final failure (dead-letter, cancel), the group
    and the workflow's final result are marked failed, so that waiters stop at once.

    These options are written by `actors.pipeline` / `actors.group`; only ``pipe_ignore`` is
    meant to be set by hand.

    Actor options:
        pipe_ignore: This pipeline step does not receive the previous step's result.
        pipe_next: The steps after this one (set by `pipeline`).
        pipe_final: The id whose result is the workflow's result (set by `pipeline`).
        group: The id of the group this message belongs to (set by `group`).
        group_size: The number of members of that group (set by `group`).
    """

    actor_options: ClassVar[frozenset[str]] = frozenset(
        {"pipe_ignore", "pipe_next", "pipe_final", "group", "group_size"}
    )

    def applies_to(self, actor: Actor[Any, Any]) -> bool:
        """Workflow steps always carry options; other messages have nothing to move on."""
        return self._uses_options_of(actor)

    def after_process_message(
        self,
        broker: Broker,
        delivery: Delivery,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """Move the workflow on after a success."""
        message = delivery.message
        if message is None or exception is not None or delivery.outcome is not Outcome.ACK:
            return
        options = message.options
        steps = options.get("pipe_next")
        if steps:
            workflows.launch(steps, result, final=options.get("pipe_final", ""), broker=broker)
        group_id = options.get("group")
        if group_id:
            workflows.complete_member(broker, registry.get_backend(), group_id,
                                      int(options["group_size"]), message.id)  # fmt: skip

    def after_dead_letter(self, broker: Broker, delivery: Delivery, failure: Failure) -> None:
        """Mark the group and the workflow failed."""
        message = delivery.message
        if message is None:
            return
        group_id = message.options.get("group", "")
        final = message.options.get("pipe_final", "")
        if group_id or final:
            error = (failure.error_type or failure.reason, failure.error_message or failure.reason)
            workflows.fail_workflow(registry.get_backend(), group_id=group_id, final=final,
                                    error=error)  # fmt: skip
