"""Composition: pipelines (one step after another) and groups (side by side, with a chord).

A workflow travels with its messages: each message carries what comes after it in its options
(``pipe_next``), and a group's record (members, what follows it) sits in the backend. The
`Workflows` middleware moves a workflow on when a step succeeds, so no process has to wait.

- ``pipeline([a, b, c]).run()``: ``a`` runs; its result is appended to ``b``'s positional
  arguments, ``b``'s to ``c``'s. A step sent with ``pipe_ignore=True`` (``actor.
  message_with_options(args=..., pipe_ignore=True)``) does not receive the previous result.
- ``group([a, b, c]).run()``: all members are enqueued at once (the broker's bulk path).
  ``.on_complete(m)`` (a chord) sends ``m`` exactly once, when every member succeeded, with the
  list of their results (in member order) as its last positional argument.
- A pipeline step may be a group: the group's members each get the previous result, and the
  next step gets the list of the group's results (or its ``on_complete`` callback's result).

A step or member that fails for good (dead-lettered, cancelled) stops the workflow: what comes
after it never runs, the chord callback is not sent, and ``get_result()`` / ``wait()`` /
``get_results()`` raise `actors.ResultFailure` at once instead of waiting out their timeout.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgpack

from actors import names, registry, results
from actors.errors import ResultMissing, ResultTimeout
from actors.message import Message

if TYPE_CHECKING:
    from actors.backends.base import Backend
    from actors.broker import Broker

#: How long group records and completion marks are kept, in seconds (one day).
WORKFLOW_TTL = 86400.0

_Encoded = dict[str, Any]


class Group:
    """Messages that run side by side; see the module docstring.

    Args:
        members: The messages (``actor.message(...)``), in the order of their results.

    Attributes:
        id: The group's id (its completion mark is stored under it).
        members: The member messages.
        callback: The ``on_complete`` message, if any.
    """

    def __init__(self, members: Sequence[Message[Any]]) -> None:
        if not members:
            raise ValueError("a group needs at least one member")
        self.id = os.urandom(16).hex()
        self.members = [_member(m, self.id, len(members)) for m in members]
        self.callback: Message[Any] | None = None

    def on_complete(self, message: Message[Any]) -> Group:
        """Send `message` once every member succeeded, with their results as its last argument.

        Returns:
            This group, for chaining (``group([...]).on_complete(m).run()``).
        """
        self.callback = message
        return self

    def run(self) -> Group:
        """Enqueue every member in one bulk publish; return this group."""
        launch([self], None, final="", broker=registry.get_broker(), first=True)
        return self

    def wait(self, *, timeout: float | None = None) -> None:
        """Block until every member succeeded (without polling).

        Raises:
            ResultTimeout: Not done within `timeout` seconds (default 10 s).
            ResultFailure: A member failed for good; carries its error.
        """
        wait = results.DEFAULT_WAIT if timeout is None else timeout
        payload = registry.get_backend().wait_result(self.id, wait)
        if payload is None:
            raise ResultTimeout(f"group {self.id} not done within {wait}s")
        results.decode(self.id, payload)

    def get_results(self, *, block: bool = True, timeout: float | None = None) -> list[Any]:
        """Return the members' results, in member order (members store results by force).

        Args:
            block: Wait until every member is done.
            timeout: The longest wait in seconds when blocking (default 10 s).

        Raises:
            ResultTimeout: Blocking, and the group was not done in time.
            ResultMissing: Not blocking, and the group is not done yet.
            ResultFailure: A member failed for good.
        """
        backend = registry.get_backend()
        if block:
            self.wait(timeout=timeout)
        else:
            payload = backend.get_result(self.id)
            if payload is None:
                raise ResultMissing(f"group {self.id} is not done yet")
            results.decode(self.id, payload)
        return [results.wait_for_result(m.id, block=False, timeout=None) for m in self.members]

    def __len__(self) -> int:
        return len(self.members)


class Pipeline:
    """Steps that run one after another, each given the previous result.

    Args:
        steps: Messages or groups, in order.
    """

    def __init__(self, steps: Sequence[Message[Any] | Group]) -> None:
        if not steps:
            raise ValueError("a pipeline needs at least one step")
        self.steps = list(steps)
        last = self.steps[-1]
        if isinstance(last, Group) and last.callback is not None:
            last.callback = _stored(last.callback)
        elif isinstance(last, Message):
            self.steps[-1] = _stored(last)

    @property
    def final_id(self) -> str:
        """The id whose stored result is the pipeline's result (last message, or group)."""
        last = self.steps[-1]
        if isinstance(last, Group):
            return last.callback.id if last.callback is not None else last.id
        return last.id

    def run(self) -> Pipeline:
        """Enqueue the first step; return this pipeline."""
        launch(self.steps, None, final=self.final_id, broker=registry.get_broker(), first=True)
        return self

    def get_result(self, *, block: bool = False, timeout: float | None = None) -> Any:
        """Return the result of the last step (a list of results if it is a group).

        Raises:
            ResultTimeout: Blocking, and the pipeline did not finish in time.
            ResultMissing: Not blocking, and no result yet.
            ResultFailure: A step failed for good; carries its error.
        """
        last = self.steps[-1]
        if isinstance(last, Group) and last.callback is None:
            return last.get_results(block=block, timeout=timeout)
        return results.wait_for_result(self.final_id, block=block, timeout=timeout)


def pipeline(steps: Sequence[Message[Any] | Group]) -> Pipeline:
    """Compose steps that run one after another; see `Pipeline`."""
    return Pipeline(steps)


def group(members: Sequence[Message[Any]]) -> Group:
    """Compose messages that run side by side; see `Group`."""
    return Group(members)


# -- moving a workflow on (producer and Workflows middleware) -----------------------------------


def launch(
    steps: Sequence[Message[Any] | Group | _Encoded],
    previous: Any,
    *,
    final: str,
    broker: Broker,
    first: bool = False,
) -> None:
    """Enqueue the first of `steps`, carrying the rest; `previous` is the result to pass on.

    Args:
        steps: The remaining steps, as objects or as carried in ``pipe_next``.
        previous: The previous step's result (ignored when `first`).
        final: The id to mark failed if the workflow stops (empty: none).
        broker: Where to enqueue.
        first: True when starting a workflow: no previous result to append.
    """
    head, rest = _decode(steps[0]), [_encode(s) for s in steps[1:]]
    if isinstance(head, Group):
        _launch_group(head, previous, rest, final=final, broker=broker, first=first)
        return
    message = _continue(head, previous, first)
    if rest:
        message.options["pipe_next"] = rest
    if final and final != message.id:
        message.options["pipe_final"] = final
    _declare(broker, message)
    broker.enqueue(message)


def _launch_group(
    head: Group, previous: Any, rest: list[_Encoded], *, final: str, broker: Broker, first: bool
) -> None:
    then = [_encode(head.callback)] if head.callback is not None else []
    record = {"members": [m.id for m in head.members], "then": then + rest, "final": final}
    backend = registry.get_backend()
    backend.set_key(_record_key(head.id), _pack(record), WORKFLOW_TTL)
    members = [_continue(m, previous, first) for m in head.members]
    for member in members:
        _declare(broker, member)
    from actors.middleware.status import batched_status

    with batched_status():
        broker.enqueue_many(members)


def complete_member(
    broker: Broker, backend: Backend, group_id: str, size: int, member: str
) -> None:
    """Count a member as done; the one who completes the group moves the workflow on."""
    added, done = backend.add_member(_done_key(group_id), member, WORKFLOW_TTL)
    if not added or done < size:
        return
    [packed] = backend.get_keys([_record_key(group_id)])
    record: dict[str, Any] = (
        _unpack(packed) if packed is not None else {"members": [], "then": [], "final": ""}
    )
    backend.put_result(group_id, results.encode_success(size), WORKFLOW_TTL)
    if record["then"]:
        gathered = [
            results.wait_for_result(mid, block=False, timeout=None) for mid in record["members"]
        ]
        launch(record["then"], gathered, final=record["final"], broker=broker)


def fail_workflow(backend: Backend, *, group_id: str, final: str, error: tuple[str, str]) -> None:
    """Mark a group (and the workflow's final id) failed, so that waiters stop at once."""
    payload = results.encode_failure(*error)
    if group_id:
        backend.put_result(group_id, payload, WORKFLOW_TTL)
        [packed] = backend.get_keys([_record_key(group_id)])
        if packed is not None:
            final = final or _unpack(packed)["final"]
    if final:
        backend.put_result(final, payload, WORKFLOW_TTL)


# -- helpers ------------------------------------------------------------------------------------


def _member(message: Message[Any], group_id: str, size: int) -> Message[Any]:
    options = {**message.options, "group": group_id, "group_size": size, "store_results": True}
    return message.copy(options=options)


def _stored(message: Message[Any]) -> Message[Any]:
    return message.copy(options={**message.options, "store_results": True})


def _continue(message: Message[Any], previous: Any, first: bool) -> Message[Any]:
    if first or message.options.get("pipe_ignore"):
        return message
    return message.copy(args=(*message.args, previous))


def _declare(broker: Broker, message: Message[Any]) -> None:
    actor = registry.find_actor(message.actor)
    if actor is not None:
        broker.declare_actor(actor)
    else:
        broker.declare_queue(message.queue)


def _encode(step: Message[Any] | Group | _Encoded) -> _Encoded:
    if isinstance(step, dict):
        return step
    if isinstance(step, Group):
        callback = _encode(step.callback) if step.callback is not None else None
        return {"g": step.id, "members": [_encode(m) for m in step.members], "then": callback}
    return {"m": [step.queue, step.actor, list(step.args), step.kwargs, step.options, step.id,
                  step.priority]}  # fmt: skip


def _decode(step: Message[Any] | Group | _Encoded) -> Message[Any] | Group:
    if not isinstance(step, dict):
        return step
    if "g" in step:
        decoded = Group.__new__(Group)
        decoded.id = step["g"]
        decoded.members = [_decode_message(m) for m in step["members"]]
        decoded.callback = _decode_message(step["then"]) if step["then"] else None
        return decoded
    return _decode_message(step)


def _decode_message(step: _Encoded) -> Message[Any]:
    queue, actor, args, kwargs, options, message_id, priority = step["m"]
    return Message(queue=queue, actor=actor, args=tuple(args), kwargs=kwargs, options=options,
                   id=message_id, priority=priority)  # fmt: skip


def _record_key(group_id: str) -> str:
    return f"{names.GROUP_KEY_PREFIX}{group_id}"


def _done_key(group_id: str) -> str:
    return f"{names.GROUP_KEY_PREFIX}{group_id}:done"


def _pack(value: Any) -> str:
    return base64.b64encode(msgpack.packb(value, use_bin_type=True)).decode()


def _unpack(text: str) -> Any:
    return msgpack.unpackb(base64.b64decode(text), raw=False, strict_map_key=False)
