"""Declaring actors and sending messages: options, priorities, delays, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import actors
from actors import registry
from actors.brokers.memory import MemoryBroker


def test_bare_and_configured_decorators_declare_actors() -> None:
    @actors.actor
    def plain(x: int) -> int:
        return x

    @actors.actor(queue="emails", priority=5, actor_name="mailer")
    async def configured(to: str) -> None: ...

    assert (plain.actor_name, plain.queue_name, plain.priority, plain.is_async) == (
        "plain", "default", 0, False,
    )  # fmt: skip
    assert (configured.actor_name, configured.queue_name, configured.priority) == (
        "mailer", "emails", 5,
    )  # fmt: skip
    assert configured.is_async
    assert registry.get_actor("mailer") is configured
    assert plain(3) == 3  # calling the actor runs the function


def test_unknown_option_is_refused_at_decoration_with_the_known_ones() -> None:
    with pytest.raises(actors.ConfigurationError) as caught:

        @actors.actor(max_retires=3)  # typo
        def typo() -> None: ...

    assert "max_retires" in str(caught.value)
    assert "queue" in str(caught.value) and "priority" in str(caught.value)


@pytest.mark.parametrize("priority", [-1, 10, 2.5, "high", True])
def test_priority_outside_0_to_9_is_refused(priority: object) -> None:
    with pytest.raises(actors.ConfigurationError, match="priority"):

        @actors.actor(priority=priority)  # type: ignore[call-overload]
        def bad() -> None: ...


def test_two_functions_cannot_share_an_actor_name() -> None:
    @actors.actor(actor_name="twin")
    def first() -> None: ...

    with pytest.raises(actors.ConfigurationError, match="already declared"):

        @actors.actor(actor_name="twin")
        def second() -> None: ...


def test_send_with_options_carries_priority_and_delay() -> None:
    broker = actors.set_broker(MemoryBroker())

    @actors.actor(priority=2)
    def task(a: int, *, b: int = 0) -> None: ...

    message = task.send_with_options(args=(1,), kwargs={"b": 2}, priority=7, delay=60)
    assert (message.args, message.kwargs, message.priority) == ((1,), {"b": 2}, 7)
    assert broker.queue_depth("default") == 1  # held as delayed
    assert task.message(1).priority == 2


def test_eta_must_be_aware_and_excludes_delay() -> None:
    actors.set_broker(MemoryBroker())

    @actors.actor
    def task() -> None: ...

    with pytest.raises(actors.ConfigurationError, match="aware"):
        task.send_with_options(eta=datetime(2030, 1, 1))
    with pytest.raises(actors.ConfigurationError, match="not both"):
        task.send_with_options(eta=datetime.now(UTC), delay=1)
    task.send_with_options(eta=datetime.now(UTC) + timedelta(minutes=5))
    task.send_with_options(delay=timedelta(seconds=30))


def test_unknown_per_message_option_is_refused() -> None:
    actors.set_broker(MemoryBroker())

    @actors.actor
    def task() -> None: ...

    with pytest.raises(actors.ConfigurationError, match="bogus"):
        task.send_with_options(bogus=1)


def test_without_a_broker_the_error_says_how_to_configure_one() -> None:
    @actors.actor
    def task() -> None: ...

    with pytest.raises(actors.ConfigurationError, match="ACTORS_BROKER_URL"):
        task.send()


def test_broker_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTORS_BROKER_URL", "memory://")
    assert isinstance(actors.get_broker(), MemoryBroker)


def test_a_backend_that_appears_after_sends_without_one_is_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from actors.backends.memory import MemoryBackend
    from actors.brokers.rabbitmq import RabbitmqBroker

    # RabbitMQ has no default backend: none is found, and asking again is cheap
    monkeypatch.delenv("ACTORS_BACKEND_URL", raising=False)
    actors.set_broker(RabbitmqBroker(url="amqp://guest:guest@127.0.0.1:5672/%2F"))
    assert registry.find_backend() is None
    assert registry.find_backend() is None
    # ... until the environment names one, or one is set
    monkeypatch.setenv("ACTORS_BACKEND_URL", "memory://")
    assert isinstance(registry.find_backend(), MemoryBackend)
    registry.reset()
    monkeypatch.delenv("ACTORS_BACKEND_URL")
    actors.set_broker(RabbitmqBroker(url="amqp://guest:guest@127.0.0.1:5672/%2F"))
    assert registry.find_backend() is None
    backend = actors.set_backend(MemoryBackend())
    assert registry.find_backend() is backend
    # a broker that brings its own backend is asked afresh
    registry.reset()
    actors.set_broker(MemoryBroker())
    assert registry.find_backend() is not None


def test_unknown_url_scheme_is_a_clear_error() -> None:
    from actors.settings import broker_from_url

    with pytest.raises(actors.ConfigurationError, match="amqp://"):
        broker_from_url("kafka://localhost")


def test_send_async_publishes_from_an_event_loop() -> None:
    import asyncio

    broker = actors.set_broker(MemoryBroker())

    @actors.actor
    def task(x: int) -> None: ...

    message = asyncio.run(task.send_async(4))
    assert message.args == (4,)
    assert broker.queue_depth("default") == 1


def test_public_api_is_locked() -> None:
    assert actors.__all__ == sorted(actors.__all__)
    for name in (
        "actor", "Actor", "Message", "Middleware", "Worker", "set_broker", "get_broker",
        "current_message", "Retry", "Fail", "ResultFailure", "ResultTimeout",
    ):  # fmt: skip
        assert name in actors.__all__, name
        assert hasattr(actors, name), name


def test_a_url_whose_extra_is_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from actors.settings import broker_from_url

    for name in [m for m in sys.modules if m == "pika" or m.startswith("actors.brokers.rabbitmq")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pika", None)  # as if the rabbitmq extra were not installed
    with pytest.raises(actors.ConfigurationError, match=r"actors-runtime\[rabbitmq\]"):
        broker_from_url("amqp://guest:guest@127.0.0.1:5672/")
