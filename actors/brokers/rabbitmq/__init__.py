"""The RabbitMQ broker (``amqp://`` / ``amqps://``); needs the ``rabbitmq`` extra.

Modules: `_settings` (the settings value object), `_topology` (queue arguments, DLQs, the
delay ladder), `_sync` (pika producer pool), `_consumer` (the worker's consumer) on
`_amqp_link` (its AMQP connection) and `_amqp_codec` (frames and tables), `_async` (aio-pika
publishing for ``send_async``), `_admin` (management HTTP API). See docs/rabbitmq.md.
"""

from actors.brokers.rabbitmq._broker import RabbitmqBroker
from actors.brokers.rabbitmq._settings import RabbitmqSettings

__all__ = ["RabbitmqBroker", "RabbitmqSettings"]
