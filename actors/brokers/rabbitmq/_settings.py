"""Settings of the RabbitMQ broker, and the pika connection parameters made from them."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

import pika

from actors.errors import ConfigurationError

QueueType = Literal["classic", "quorum"]


@dataclass(frozen=True, slots=True)
class RabbitmqSettings:
    """How to reach RabbitMQ and how to shape its queues.

    Attributes:
        url: ``amqp://user:password@host:port/vhost`` or ``amqps://...`` (TLS); the query
            string takes pika's URL options (``heartbeat``, ``channel_max`` ...).
        confirm_delivery: Ask RabbitMQ for a publisher confirm of every publish (default on).
        max_priority: Priority levels of the queues (``x-max-priority``, default 10); None or
            0 declares queues without priorities.
        heartbeat: AMQP heartbeat in seconds (default 10): how soon a dead link is noticed.
        connection_name: Shown in the management UI's connection list.
        connect_timeout: Seconds a producer keeps trying to reach RabbitMQ (and to retry a
            publish whose outcome is unknown) before raising `ConnectionFailed` (default 15).
        queue_type: ``classic`` (default) or ``quorum`` (clusters; no priorities).
        dlq_ttl: Seconds a dead letter is kept in ``Q.DLQ`` (default: forever).
        max_deliveries: Deliveries after which a message that keeps killing its worker is
            dead-lettered with reason ``poison`` (default 3; None turns the guard off).
        management_url: Base URL of the management HTTP API (default: same host, port 15672,
            or 15671 for ``amqps``; credentials from `url` unless the URL carries its own).
        ssl_context: TLS context for ``amqps`` (default: the system's trusted CAs).
        wait_for_confirms: ``send()`` returns only once RabbitMQ confirmed the message (it is
            on disk). Off by default: ``send()`` returns once the message is written to the
            connection, and the producer keeps it until its confirm comes, publishing it
            again if the connection is lost first (``flush()`` waits for them all). Inside
            a worker, sends always wait: the message being processed is acknowledged after.
    """

    url: str = "amqp://guest:guest@localhost:5672/"
    confirm_delivery: bool = True
    max_priority: int | None = 10
    heartbeat: float = 10.0
    connection_name: str | None = None
    connect_timeout: float = 15.0
    queue_type: QueueType = "classic"
    dlq_ttl: float | None = None
    max_deliveries: int | None = 3
    management_url: str | None = None
    ssl_context: ssl.SSLContext | None = None
    wait_for_confirms: bool = False

    def __post_init__(self) -> None:
        scheme = urlsplit(self.url).scheme.lower()
        if scheme not in ("amqp", "amqps"):
            raise ConfigurationError(f"RabbitMQ URL must be amqp:// or amqps://, not {self.url!r}")
        if self.queue_type not in ("classic", "quorum"):
            raise ConfigurationError(
                f"queue_type must be 'classic' or 'quorum', not {self.queue_type!r}"
            )
        if self.queue_type == "quorum" and self.max_priority:
            raise ConfigurationError(
                "quorum queues have no priorities on RabbitMQ 3.10: "
                "pass max_priority=None with queue_type='quorum' (or use classic queues)"
            )
        if self.max_priority is not None and not 0 <= self.max_priority <= 255:
            raise ConfigurationError(f"max_priority must be within 0..255, not {self.max_priority}")
        if self.max_deliveries is not None and self.max_deliveries < 1:
            raise ConfigurationError(
                f"max_deliveries must be at least 1, not {self.max_deliveries}"
            )

    @property
    def vhost(self) -> str:
        """The virtual host named by the URL (``/`` by default)."""
        path = urlsplit(self.url).path
        return unquote(path[1:]) if len(path) > 1 else "/"

    def connection_parameters(self, role: str) -> pika.URLParameters:
        """pika parameters for a connection playing `role` (``producer``, ``consumer`` ...)."""
        params = pika.URLParameters(self.url)
        if "heartbeat" not in urlsplit(self.url).query:
            params.heartbeat = max(1, round(self.heartbeat))
        params.socket_timeout = min(5.0, self.connect_timeout)
        params.stack_timeout = min(10.0, self.connect_timeout)
        params.blocked_connection_timeout = self.connect_timeout
        params.connection_attempts = 1
        name = f"{self.connection_name or 'actors'} ({role})"
        params.client_properties = {"connection_name": name, "product": "actors"}
        if self.ssl_context is not None:
            host = urlsplit(self.url).hostname or "localhost"
            params.ssl_options = pika.SSLOptions(self.ssl_context, server_hostname=host)
        return params

    def management_base(self) -> tuple[str, str, str]:
        """Return the management API base URL, user and password."""
        amqp = urlsplit(self.url)
        user, password = unquote(amqp.username or "guest"), unquote(amqp.password or "guest")
        if self.management_url is not None:
            given = urlsplit(self.management_url)
            if given.username:
                user, password = unquote(given.username), unquote(given.password or "")
            netloc = given.hostname or "localhost"
            if given.port:
                netloc += f":{given.port}"
            base = f"{given.scheme}://{netloc}{given.path.rstrip('/')}"
            return base, user, password
        tls = amqp.scheme.lower() == "amqps"
        host = amqp.hostname or "localhost"
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if tls else 'http'}://{host}:{15671 if tls else 15672}", user, password


def quote_vhost(vhost: str) -> str:
    """Quote a vhost for a management API path (``/`` becomes ``%2F``)."""
    return quote(vhost, safe="")
