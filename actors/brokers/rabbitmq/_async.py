"""Publishing from asyncio code with aio-pika: one connection per event loop, confirms on."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import aio_pika
import aio_pika.exceptions
import aiormq.exceptions

from actors.brokers.rabbitmq._sync import backoff, describe_server
from actors.errors import ConnectionFailed, PublishError

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractConnection

    from actors.brokers.rabbitmq._settings import RabbitmqSettings

logger = logging.getLogger("actors.brokers.rabbitmq")

_LINK_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aio_pika.exceptions.ChannelClosed,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


class AsyncPublisher:
    """Publishes for one event loop; safe for many tasks at once (confirms run concurrently)."""

    def __init__(self, settings: RabbitmqSettings) -> None:
        self._settings = settings
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._opening: asyncio.Lock | None = None

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, properties: dict[str, Any]
    ) -> None:
        """Publish one message and wait for its confirm, retrying an unknown outcome.

        Raises:
            PublishError: RabbitMQ nacked the message or could not route it.
            ConnectionFailed: Not confirmed within ``connect_timeout`` seconds.
        """
        wait = self._settings.connect_timeout
        deadline = time.monotonic() + wait
        message = aio_pika.Message(body, **properties)
        attempt = 0
        while True:
            try:
                channel = await self._open()
                target = (
                    channel.default_exchange
                    if exchange == ""
                    else await channel.get_exchange(exchange, ensure=False)
                )
                await target.publish(
                    message,
                    routing_key,
                    mandatory=True,
                    timeout=max(1.0, deadline - time.monotonic()),
                )
                return
            except aio_pika.exceptions.DeliveryError as exc:
                raise PublishError(
                    f"message {message.message_id} to {routing_key!r} was nacked by RabbitMQ",
                    message_id=message.message_id,
                ) from exc
            except aio_pika.exceptions.PublishError as exc:
                raise PublishError(
                    f"message {message.message_id} to {routing_key!r} is unroutable",
                    message_id=message.message_id,
                ) from exc
            except _LINK_ERRORS as exc:
                await self._drop()
                pause = backoff(attempt)
                attempt += 1
                if time.monotonic() + pause >= deadline:
                    raise ConnectionFailed(
                        f"RabbitMQ at {describe_server(self._settings.url)} did not confirm "
                        f"within {wait:g}s: {exc!r}"
                    ) from exc
                await asyncio.sleep(pause)

    async def _open(self) -> AbstractChannel:
        if self._channel is not None and not self._channel.is_closed:
            return self._channel
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._channel is None or self._channel.is_closed:
                await self._drop()
                params = self._settings.connection_parameters("async producer")
                self._connection = await aio_pika.connect(
                    self._settings.url,
                    timeout=self._settings.connect_timeout,
                    client_properties=params.client_properties,
                    ssl_context=self._settings.ssl_context,
                    heartbeat=params.heartbeat,
                )
                self._channel = await self._connection.channel(
                    publisher_confirms=self._settings.confirm_delivery, on_return_raises=True
                )
            assert self._channel is not None
            return self._channel

    async def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and not connection.is_closed:
            try:
                await connection.close()
            except Exception:
                logger.debug("error closing an async producer connection", exc_info=True)

    async def close(self) -> None:
        """Close the connection."""
        await self._drop()
