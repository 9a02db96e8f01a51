"""A custom middleware: stamp every message with a tenant id, and log it where it runs.

Run it with ``python examples/custom_middleware.py`` (in-memory broker, nothing to install).

The producer sets the tenant for a block of code with ``tenant(...)``; `TenantMiddleware`
copies it into each message it enqueues (``before_enqueue``), and on the worker side logs it
and makes it available to the actor again (``before_process_message``).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import actors
from actors.broker import Broker
from actors.brokers.memory import MemoryBroker
from actors.delivery import Delivery
from actors.message import Message
from actors.testing import running_worker

logger = logging.getLogger("example.tenants")

_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant", default=None)


@contextmanager
def tenant(tenant_id: str) -> Iterator[None]:
    """Make `tenant_id` the tenant of the messages sent inside the block."""
    token = _tenant.set(tenant_id)
    try:
        yield
    finally:
        _tenant.reset(token)


def current_tenant() -> str | None:
    """The tenant of the message being processed (or of the block, in a producer)."""
    return _tenant.get()


class TenantMiddleware(actors.Middleware):
    """Carries the caller's tenant id with every message.

    Actor options: tenant_id (set by this middleware; can also be given per message).
    """

    actor_options: ClassVar[frozenset[str]] = frozenset({"tenant_id"})

    def before_enqueue(self, broker: Broker, message: Message[Any], delay: float | None) -> None:
        """Producer side: copy the current tenant into the message's options."""
        tenant_id = _tenant.get()
        if tenant_id is not None:
            message.options.setdefault("tenant_id", tenant_id)

    def before_process_message(self, broker: Broker, delivery: Delivery) -> None:
        """Worker side: log the tenant and expose it to the actor."""
        tenant_id = delivery.option("tenant_id")
        _tenant.set(tenant_id)
        logger.info("running %s for tenant %s", delivery.message, tenant_id)


broker = actors.set_broker(MemoryBroker())
broker.add_middleware(TenantMiddleware())


@actors.actor(store_results=True)
def invoice_total(amounts: list[int]) -> str:
    return f"tenant {current_tenant()}: total {sum(amounts)}"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(threadName)s %(name)s: %(message)s")
    with running_worker(broker, threads=2):
        with tenant("acme"):
            first = invoice_total.send([10, 20])
        with tenant("globex"):
            second = invoice_total.send([5])
        print(first.get_result(block=True, timeout=10))
        print(second.get_result(block=True, timeout=10))


if __name__ == "__main__":
    main()
