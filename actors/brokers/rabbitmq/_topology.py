"""AMQP names and arguments: queues, their dead-letter queues and the shared delay ladder.

The delay ladder holds delayed messages inside RabbitMQ. Rung ``k`` is a durable queue
``actors.delay.<ms>`` whose fixed TTL is ``100 ms * 2**k``; a delay is rounded *up* to whole
100 ms units and written in binary into the routing key, one word per rung, followed by the
target queue (``0.0.....1.0.1.emails``). A topic exchange per rung routes a message into that
rung's queue when its bit is 1 and on to the next lower rung's exchange when it is 0; an expired
message dead-letters (keeping its routing key) into the next lower rung's exchange, and after
rung 0 into ``actors.delay.deliver``, where each queue is bound by its name. Every queue holds
a single TTL, so expiry at the head of the queue is exact (mixed TTLs in one queue are not).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from actors import names
from actors.errors import ConfigurationError, QueueConflict

if TYPE_CHECKING:
    from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

    from actors.brokers.rabbitmq._settings import RabbitmqSettings

DELAY_STEP_MS = 100
DELAY_LEVELS = 32  # 100 ms * 2**32 ~ 13.6 years of delay at most
DELAY_DELIVER_EXCHANGE = "actors.delay.deliver"
MAX_DELAY = DELAY_STEP_MS * ((1 << DELAY_LEVELS) - 1) / 1000
_MAX_ROUTING_KEY = 255

#: Headers RabbitMQ adds while dead-lettering (``x-death`` ...); dropped when we republish.
BROKER_HEADER_PREFIX = "x-"


def delay_queue(level: int) -> str:
    """Name of rung `level` of the delay ladder (its TTL in milliseconds)."""
    return f"actors.delay.{DELAY_STEP_MS << level}"


def delay_exchange(level: int) -> str:
    """Name of the topic exchange that routes into rung `level` or below it."""
    return f"actors.delay.level-{level:02d}"


def _below(level: int) -> str:
    return delay_exchange(level - 1) if level > 0 else DELAY_DELIVER_EXCHANGE


def _prefix(level: int) -> str:
    return "*." * (DELAY_LEVELS - 1 - level)


def delay_route(queue: str, delay: float) -> tuple[str, str]:
    """Return the exchange and routing key that deliver into `queue` after `delay` seconds.

    Raises:
        ConfigurationError: The delay is longer than the ladder (~13 years) or the queue name
            too long to fit a routing key.
    """
    units = max(1, math.ceil(round(delay * 1000, 3) / DELAY_STEP_MS))
    if units >= 1 << DELAY_LEVELS:
        raise ConfigurationError(f"delay of {delay}s exceeds the longest delay ({MAX_DELAY:.0f}s)")
    routing_key = ".".join(format(units, f"0{DELAY_LEVELS}b")) + "." + queue
    if len(routing_key.encode()) > _MAX_ROUTING_KEY:
        raise ConfigurationError(f"queue name {queue!r} is too long for delayed messages")
    return delay_exchange(units.bit_length() - 1), routing_key


def delay_binding(queue: str) -> str:
    """The binding of `queue` to the ladder's deliver exchange."""
    return "*." * DELAY_LEVELS + queue


def rounded_delay(delay: float) -> float:
    """The delay in seconds that the ladder really applies to `delay` (rounded up)."""
    return max(1, math.ceil(round(delay * 1000, 3) / DELAY_STEP_MS)) * DELAY_STEP_MS / 1000


def ladder_exists(connection: BlockingConnection) -> bool:
    """Tell whether the ladder's top rung, declared last, exists (on a channel of its own)."""
    import pika.exceptions

    channel = connection.channel()
    try:
        channel.queue_declare(delay_queue(DELAY_LEVELS - 1), passive=True)
    except pika.exceptions.ChannelClosedByBroker:
        return False
    channel.close()
    return True


def declare_ladder(channel: BlockingChannel) -> None:
    """Declare the delay ladder's exchanges, queues and bindings (idempotent)."""
    channel.exchange_declare(DELAY_DELIVER_EXCHANGE, "topic", durable=True)
    for level in range(DELAY_LEVELS):
        channel.exchange_declare(delay_exchange(level), "topic", durable=True)
    for level in range(DELAY_LEVELS):
        channel.exchange_bind(
            _below(level), delay_exchange(level), routing_key=_prefix(level) + "0.#"
        )
    # Rungs last, in ascending order: `ladder_exists` checks the top one.
    for level in range(DELAY_LEVELS):
        queue = delay_queue(level)
        arguments = {
            "x-message-ttl": DELAY_STEP_MS << level,
            "x-dead-letter-exchange": _below(level),
        }
        channel.queue_declare(queue, durable=True, arguments=arguments)
        channel.queue_bind(queue, delay_exchange(level), routing_key=_prefix(level) + "1.#")


def queue_arguments(queue: str, settings: RabbitmqSettings) -> dict[str, Any]:
    """Arguments of a work queue: dead-lettering into ``Q.DLQ``, priorities or quorum."""
    arguments: dict[str, Any] = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": names.dead_letter_queue(queue),
    }
    if settings.queue_type == "quorum":
        arguments["x-queue-type"] = "quorum"
        if settings.max_deliveries is not None:
            arguments["x-delivery-limit"] = settings.max_deliveries
    elif settings.max_priority:
        arguments["x-max-priority"] = settings.max_priority
    return arguments


def dead_letter_queue_arguments(settings: RabbitmqSettings) -> dict[str, Any]:
    """Arguments of a ``Q.DLQ``: same queue type, TTL if asked."""
    arguments: dict[str, Any] = {}
    if settings.queue_type == "quorum":
        arguments["x-queue-type"] = "quorum"
    if settings.dlq_ttl is not None:
        arguments["x-message-ttl"] = max(0, round(settings.dlq_ttl * 1000))
    return arguments


def declare_queue(channel: BlockingChannel, queue: str, settings: RabbitmqSettings) -> None:
    """Declare `queue`, its DLQ, and its binding to the delay ladder.

    Raises:
        QueueConflict: One of them exists with other arguments.
    """
    import pika.exceptions

    dlq = names.dead_letter_queue(queue)
    for name, arguments in (
        (dlq, dead_letter_queue_arguments(settings)),
        (queue, queue_arguments(queue, settings)),
    ):
        try:
            channel.queue_declare(name, durable=True, arguments=arguments)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 406:
                raise
            raise conflict(name, exc.reply_text) from exc
    channel.queue_bind(queue, DELAY_DELIVER_EXCHANGE, routing_key=delay_binding(queue))


_INEQUIVALENT = re.compile(r"inequivalent arg '(?P<arg>[^']+)'[^:]*: (?P<rest>.*)")
_CURRENT = re.compile(r"current is (?:the value )?'(?P<value>[^']*)'|current is (?P<none>none)")

_OPTION_OF = {
    "x-max-priority": "max_priority",
    "x-queue-type": "queue_type",
    "x-delivery-limit": "max_deliveries",
    "x-message-ttl": "dlq_ttl",
}


def conflict(queue: str, reply_text: str) -> QueueConflict:
    """Turn RabbitMQ's PRECONDITION_FAILED text into an error that says how to migrate."""
    match = _INEQUIVALENT.search(reply_text)
    argument = match["arg"] if match else "?"
    difference = match["rest"] if match else reply_text
    option = _OPTION_OF.get(argument)
    keep = (
        f"pass {option}={_option_value(argument, difference)} to match the existing queue, or "
        if option
        else "the queue was declared by another tool or version; "
    )
    detail = (
        f"argument {argument!r} differs ({difference.replace('received', 'we asked for')}). "
        f"To migrate: {keep}drain the queue, delete it (rabbitmqctl delete_queue {queue!r} or the "
        "management UI) and let actors declare it again, or move the work to a new queue name."
    )
    return QueueConflict(queue, detail, argument=argument)


def _option_value(argument: str, difference: str) -> str:
    """The option value that matches the server's current argument, as Python source."""
    found = _CURRENT.search(difference)
    if found is None:
        return "..."
    if found["none"] or found["value"] in ("", "none"):
        return "None"
    value = found["value"]
    if argument == "x-message-ttl" and value.isdigit():
        return f"{int(value) / 1000:g}"
    return value if value.isdigit() else repr(value)
