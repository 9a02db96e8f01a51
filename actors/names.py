"""Names shared with the outside world: message headers, queue suffixes, key prefixes.

Operators see these in the RabbitMQ management UI and in redis-cli, and producers in other
languages write them, so they live in one place and do not change lightly.
"""

from __future__ import annotations

WIRE_VERSION = 1

DEFAULT_QUEUE = "default"
DLQ_SUFFIX = ".DLQ"

HEADER_ID = "actors-id"
HEADER_ACTOR = "actors-actor"
HEADER_QUEUE = "actors-queue"
HEADER_RETRIES = "actors-retries"
HEADER_ENQUEUED_AT = "actors-enqueued-at"
HEADER_ENCODING = "actors-encoding"
HEADER_SIGNATURE = "actors-signature"
HEADER_DELIVERIES = "actors-deliveries"

HEADER_DEAD_REASON = "actors-dead-letter-reason"
HEADER_ERROR_TYPE = "actors-error-type"
HEADER_ERROR = "actors-error"
HEADER_FAILED_AT = "actors-failed-at"
HEADER_ORIGINAL_QUEUE = "actors-original-queue"

ERROR_TEXT_LIMIT = 1024

# Backend keys are ``<namespace>:<prefix><id>``; the namespace defaults to BACKEND_NAMESPACE.
BACKEND_NAMESPACE = "actors"
RESULT_KEY_PREFIX = "result:"  # a one-element list holding the stored result
SLOTS_KEY_PREFIX = "slots:"  # a sorted set of concurrency-slot holders scored by expiry
RATE_KEY_PREFIX = "rate:"  # a sorted set of recent acquisitions (sliding-window rate limit)
STATUS_KEY_PREFIX = "status:"  # a hash: state, progress, attempts, timestamps of a message
CANCEL_KEY_PREFIX = "cancel:"  # present while a message is cancelled (with a TTL)
CANCEL_LOG_KEY = "cancels"  # a log (sorted set) of cancelled message ids by time, read by workers
GROUP_KEY_PREFIX = "group:"  # a group's record (members, callback) and its set of finished members
UNIQUE_KEY_PREFIX = "unique:"  # the lock of a unique message: actor + argument hash -> message id
SCHEDULE_KEY_PREFIX = "schedule:"  # tick leases, last run times and disabled flags of schedules

# Redis broker keys are ``<namespace>:q:<queue>...`` (see redis_* below and docs/redis.md).
REDIS_NAMESPACE = "actors"
REDIS_GROUP = "actors"  # the consumer group on every ready stream
REDIS_FIELD_BODY = "body"  # the stream field holding the encoded body, next to the headers
REDIS_FIELD_PRIORITY = "actors-priority"  # on delayed and dead-lettered entries only
PRIORITY_LEVELS = 10  # priorities 0..9


def redis_queues_key(namespace: str) -> str:
    """Return the key of the set of queue names declared under `namespace`."""
    return f"{namespace}:queues"


def redis_stream_key(namespace: str, queue: str, priority: int) -> str:
    """Return the key of the ready stream of `queue` for one priority level (0..9)."""
    return f"{namespace}:q:{queue}:p{priority}"


def redis_delayed_key(namespace: str, queue: str) -> str:
    """Return the key of the sorted set of `queue`'s delayed entry ids, scored by due time (ms)."""
    return f"{namespace}:q:{queue}:delayed"


def redis_delayed_messages_key(namespace: str, queue: str) -> str:
    """Return the key of the stream holding the fields of `queue`'s delayed messages."""
    return f"{namespace}:q:{queue}:delayed:messages"


def redis_dead_letter_key(namespace: str, queue: str) -> str:
    """Return the key of the dead-letter stream of `queue` (``<namespace>:q:Q.DLQ``)."""
    return f"{namespace}:q:{dead_letter_queue(queue)}"


def dead_letter_queue(queue: str) -> str:
    """Return the name of the dead-letter queue of `queue` (``Q`` -> ``Q.DLQ``)."""
    return queue + DLQ_SUFFIX


def is_dead_letter_queue(queue: str) -> bool:
    """Tell whether `queue` is a dead-letter queue."""
    return queue.endswith(DLQ_SUFFIX)


def original_queue(dlq: str) -> str:
    """Return the queue whose dead letters `dlq` holds (``Q.DLQ`` -> ``Q``)."""
    return dlq[: -len(DLQ_SUFFIX)] if is_dead_letter_queue(dlq) else dlq
