"""The synchronous producer: pika connections with confirm-mode channels, one per thread in use.

Threads borrow a `Link` (connection + channel) from a pool for one operation and give it back,
so publishes from many threads run in parallel without sharing a channel. Confirms are read
from the channel's underlying asynchronous object, which lets a batch be published with all its
confirms in flight at once and gives every wait a deadline (pika's blocking publish has none).

A publish is on the critical path of every confirmed `send()` (a round trip of about 1 ms), so
the frames of a message, or of a whole batch, are encoded here and written with one socket send
instead of pika's three buffered writes and a writability wake-up of its I/O loop.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import pika
import pika.exceptions
from pika.adapters.blocking_connection import _IoloopTimerContext
from pika.adapters.select_connection import _PollerBase
from pika.adapters.utils.connection_workflow import AMQPConnectorException
from pika.adapters.utils.io_services_utils import _AsyncPlaintextTransport

from actors.brokers.rabbitmq import _amqp_codec as wire
from actors.errors import ConnectionFailed, PublishError

if TYPE_CHECKING:
    from actors.brokers.rabbitmq._settings import RabbitmqSettings

logger = logging.getLogger("actors.brokers.rabbitmq")

T = TypeVar("T")


class ConfirmTimeout(Exception):
    """No confirm arrived in time: the link is treated as dead (outcome unknown)."""


#: Errors after which a link is dead and an unconfirmed publish has an unknown outcome.
#: pika raises `AMQPConnectorException` (not an `AMQPConnectionError`) when the AMQP handshake
#: of a new connection times out, e.g. behind a half-open link.
LINK_ERRORS: tuple[type[BaseException], ...] = (
    ConfirmTimeout,
    AMQPConnectorException,
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.ConnectionWrongStateError,
    OSError,
)
_AUTH_ERRORS = (
    pika.exceptions.ProbableAuthenticationError,
    pika.exceptions.ProbableAccessDeniedError,
    pika.exceptions.AuthenticationError,
)


@dataclass(slots=True)
class Outgoing:
    """One message to publish."""

    exchange: str
    routing_key: str
    body: bytes
    properties: pika.BasicProperties


def backoff(attempt: int, *, first: float = 0.1, cap: float = 2.0) -> float:
    """Exponential backoff with jitter, in seconds, bounded by `cap`."""
    return float(min(cap, first * 2**attempt) * random.uniform(0.5, 1.0))


def describe_server(url: str) -> str:
    """``host:port/vhost`` of an AMQP URL, without credentials (for errors and logs)."""
    parts = urlsplit(url)
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    return f"{parts.hostname or 'localhost'}:{port}{parts.path or '/'}"


# -- frame encoding -----------------------------------------------------------------------------
# With the consumer's codec (`_amqp_codec`): the bytes are those pika writes for `basic_publish`
# (tests/test_rabbitmq.py compares them), at a fraction of pika's generic encoder's cost.

#: About how many bytes of frames are joined into one socket write: a few dozen small messages,
#: so that RabbitMQ starts on a batch while the rest of it is encoded (16-64 KiB measured alike).
_WRITE_SIZE = 16 * 1024
#: Seconds between two reads of the socket by a publisher without confirms.
_UNCONFIRMED_POLL = 0.05
#: Streamed publishes (see `Link.stream`) that may wait for their confirms on one link.
_STREAM_WINDOW = 1000
#: Streamed publishes after which the confirms that came are read: a few at a time, not
#: hundreds in one `send()`.
_STREAM_READ_EVERY = 4
#: Bytes read from the socket at once when looking for confirms.
_READ_SIZE = 65536
#: The longest pika's I/O loop sleeps in one poll, whatever its timers (5 s in pika 1.x).
_POLL_CAP = float(getattr(_PollerBase, "_MAX_POLL_TIMEOUT", 5)) + 0.5
_NOTHING_ELSE = (None,) * 9
_NACKED = "nacked by RabbitMQ (queue full, or an internal error)"


def _properties(properties: pika.BasicProperties) -> bytes:
    """The property flags and list of a content header frame."""
    others = (
        properties.content_encoding, properties.correlation_id, properties.reply_to,
        properties.expiration, properties.timestamp, properties.type, properties.user_id,
        properties.app_id, properties.cluster_id,
    )  # fmt: skip
    if others != _NOTHING_ELSE:  # properties the producer never sets: pika's encoder
        return b"".join(properties.encode())
    return wire.encode_properties(
        wire.Properties(
            content_type=properties.content_type,
            headers=properties.headers,
            delivery_mode=properties.delivery_mode,
            priority=properties.priority,
            message_id=properties.message_id,
        )
    )


def publish_method_frame(channel: int, exchange: str, routing_key: str) -> bytes:
    """The Basic.Publish method frame (mandatory, as every publish here) for one route."""
    return wire.method_frame(channel, wire.BASIC_PUBLISH, wire.publish(exchange, routing_key, True))


def add_content_frames(out: list[bytes], channel: int, item: Outgoing, body_max: int) -> int:
    """Append the content header frame and the body frames of `item` to `out`; count them."""
    body = item.body
    out.append(wire.encoded_content_frames(channel, _properties(item.properties), body, body_max))
    return 1 + -(-len(body) // body_max)


class Link:
    """A producer connection and its channel, in confirm mode; used by one thread at a time."""

    def __init__(self, settings: RabbitmqSettings) -> None:
        self.connection = pika.BlockingConnection(settings.connection_parameters("producer"))
        self.channel = self.connection.channel()
        self.confirming = settings.confirm_delivery
        self.heartbeat = settings.heartbeat
        self.last_used = time.monotonic()
        self._published = 0  # confirm-mode delivery tags count publishes from 1
        # Every publish waiting for its confirm, in publish order (so by ascending tag):
        self._unconfirmed: dict[int, Outgoing] = {}
        self._refused: list[tuple[Outgoing, str]] = []  # confirmed negatively, not yet reported
        self._returned: dict[str | None, str] = {}  # message id -> why it was returned
        impl = self.channel._impl
        impl.add_on_return_callback(self._on_return)
        self._channel_impl = impl
        self._connection_impl = self.connection._impl
        self._routes: dict[tuple[str, str], bytes] = {}  # (exchange, key) -> method frame
        self._polled_at = time.monotonic()
        self._streamed_unread = 0  # streamed publishes since confirms were last read
        if self.confirming:
            selected: list[object] = []

            impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=selected.append)
            self._pump(lambda: bool(selected), time.monotonic() + settings.connect_timeout)

    def is_fresh(self) -> bool:
        """Tell whether the link is still open, checking the socket if it sat idle a while."""
        if not self.connection.is_open or not self.channel.is_open:
            return False
        if time.monotonic() - self.last_used > self.heartbeat / 2:
            try:
                self.connection.process_data_events(0)
            except LINK_ERRORS:
                return False
        return bool(self.connection.is_open and self.channel.is_open)

    def publish(self, batch: list[Outgoing], deadline: float) -> list[tuple[Outgoing, str]]:
        """Publish `batch` and wait for every confirm on this link; return the refused messages.

        Refused messages are those RabbitMQ nacked or returned, of this batch and of earlier
        `stream` calls. On return `batch` is empty. If a `LINK_ERRORS` exception escapes,
        `batch` holds exactly the messages of this link whose outcome is unknown (streamed
        earlier or in this batch; confirmed ones are removed), to be sent again.

        Raises:
            LINK_ERRORS: The link died, or no confirm came before `deadline`.
        """
        self._send(batch)
        if not self.confirming:
            self._poll_now_and_then()
            return []
        self.settle(deadline, batch)
        return self.take_refused()

    def stream(self, batch: list[Outgoing], deadline: float) -> list[tuple[Outgoing, str]]:
        """Publish `batch` without waiting for its confirms; return the refused messages so far.

        Confirms that came are read after every `_STREAM_READ_EVERY` publishes, every
        `_UNCONFIRMED_POLL` seconds and by `settle`; when `_STREAM_WINDOW` publishes wait for
        theirs, this waits until half of them came. Errors as for `publish`.
        """
        self._streamed_unread += len(batch)
        self._send(batch)
        if len(self._unconfirmed) >= _STREAM_WINDOW:
            self.settle(deadline, batch, until=_STREAM_WINDOW // 2)
        elif self._streamed_unread >= _STREAM_READ_EVERY:
            self._read_now()
        else:
            self._poll_now_and_then()
        return self.take_refused()

    def settle(self, deadline: float, batch: list[Outgoing] | None = None, until: int = 0) -> None:
        """Read confirms until at most `until` publishes wait for theirs.

        Raises:
            LINK_ERRORS: As for `publish` (with `batch`, if given, holding the unknown ones).
        """
        unconfirmed = self._unconfirmed
        try:
            self._pump(lambda: len(unconfirmed) <= until, deadline)
        except LINK_ERRORS:
            if batch is not None:
                batch[:] = self.take_unconfirmed()
            raise

    def take_unconfirmed(self) -> list[Outgoing]:
        """Remove and return what this link published without a positive confirm (yet)."""
        items = [item for item, _ in self._refused] + list(self._unconfirmed.values())
        self._unconfirmed.clear()
        self._refused.clear()
        return items

    def take_refused(self) -> list[tuple[Outgoing, str]]:
        """Remove and return the messages RabbitMQ refused, with why."""
        refused, self._refused = self._refused, []
        return refused

    def _send(self, batch: list[Outgoing]) -> None:
        """Write `batch`, registering each message for its confirm; empty `batch` after.

        Raises:
            LINK_ERRORS: The link died; `batch` then holds the messages of unknown outcome.
        """
        if not self._channel_impl.is_open:
            raise pika.exceptions.ChannelWrongStateError("producer channel is closed")
        sent = 0  # messages of the batch written so far
        unconfirmed = self._unconfirmed
        try:
            # Written piece by piece as encoded, so that RabbitMQ works on the first messages
            # of a large batch while the rest are encoded.
            for count, data, frames in self._encode(batch):
                if self.confirming:
                    first = self._published + 1
                    self._published += count
                    tags = range(first, first + count)
                    unconfirmed.update(zip(tags, batch[sent : sent + count], strict=True))
                self._write(data, frames)
                sent += count
        except LINK_ERRORS:
            batch[:] = self.take_unconfirmed() + batch[sent:]
            raise
        batch.clear()
        self.last_used = time.monotonic()

    def _encode(self, batch: list[Outgoing]) -> Iterator[tuple[int, bytes, int]]:
        """Encode `batch` in pieces of about `_WRITE_SIZE` bytes: (messages, bytes, frames)."""
        channel = self._channel_impl.channel_number
        body_max = self._connection_impl._body_max_length
        routes = self._routes
        out: list[bytes] = []
        size = count = frames = 0
        for item in batch:
            route = (item.exchange, item.routing_key)
            method = routes.get(route)
            if method is None:
                if len(routes) >= 1024:
                    routes.clear()
                method = routes[route] = publish_method_frame(channel, *route)
            out.append(method)
            frames += 1 + add_content_frames(out, channel, item, body_max)
            count += 1
            size += len(item.body) + 512  # 512: more than the other frames of a message
            if size >= _WRITE_SIZE:
                yield count, b"".join(out), frames
                out, size, count, frames = [], 0, 0, 0
        if out:
            yield count, b"".join(out), frames

    def _poll_now_and_then(self) -> None:
        """Flush what the socket refused, and read what came in (confirms, returns,
        heartbeats, a closed channel) every `_UNCONFIRMED_POLL` seconds, not on every publish."""
        if (
            self._connection_impl._get_write_buffer_size()
            or time.monotonic() - self._polled_at >= _UNCONFIRMED_POLL
        ):
            self._read_now()

    def _read_now(self) -> None:
        """Flush what the socket refused and read what came in, without waiting.

        Confirms are what usually comes in, and often all of it; pika takes ~100 us per
        confirm frame, so the confirm frames at the head of what was read are parsed here,
        and the rest (a return, a heartbeat, a close, a partial frame) goes to pika, in order.
        """
        impl = self._connection_impl
        transport = impl._transport
        if (
            self.confirming
            and type(transport) is _AsyncPlaintextTransport
            and transport._state == transport._STATE_ACTIVE
            and not transport.get_write_buffer_size()
            and not impl._frame_buffer
        ):
            try:
                data: bytes | None = transport._sock.recv(_READ_SIZE)
            except (BlockingIOError, InterruptedError):
                data = None  # nothing came
            rest = b"" if data is None else self._take_confirms(data)
            if data == b"" or rest:  # the end of the stream, or more than confirms
                try:
                    impl._on_data_available(rest)
                except pika.exceptions.AMQPError as exc:  # frames pika cannot read
                    error = f"unreadable frames from RabbitMQ: {exc!r}"
                    raise pika.exceptions.AMQPConnectionError(error) from exc
                self.connection.process_data_events(0)
        else:
            self.connection.process_data_events(0)
        self._polled_at = time.monotonic()
        self._streamed_unread = 0

    def _take_confirms(self, data: bytes) -> bytes:
        """Handle the complete confirm frames at the head of `data`; return what follows."""
        confirms, used = wire.read_leading_confirms(data, self._channel_impl.channel_number)
        for tag, multiple, nacked in confirms:
            self._confirmed(tag, multiple, nacked)
        # pika's heartbeat check counts what arrived.
        self._connection_impl.bytes_received += used
        self._connection_impl.frames_received += len(confirms)
        return data[used:]

    def _write(self, data: bytes, frames: int) -> None:
        """Send `data` on the connection's socket now, buffering what the socket refuses.

        Sending straight from this thread (the link's only user) saves pika's buffered write:
        a writability watch on the socket and one more I/O loop round per publish. Data goes
        through pika's buffer when some is already queued there (to keep the order) or the
        transport is not a plain TCP one (TLS).
        """
        impl = self._connection_impl
        if not impl.is_open:
            raise pika.exceptions.ConnectionWrongStateError("producer connection is closed")
        transport = impl._transport
        if (
            type(transport) is _AsyncPlaintextTransport
            and transport._state == transport._STATE_ACTIVE
            and not transport.get_write_buffer_size()
        ):
            try:
                sent = transport._sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            if sent < len(data):
                impl._adapter_emit_data(data[sent:])
        else:
            impl._adapter_emit_data(data)
        impl.bytes_sent += len(data)
        impl.frames_sent += frames

    def _pump(self, done: Callable[[], bool], deadline: float) -> None:
        """Run the connection's I/O until `done()` or the deadline.

        pika's own wait loop (what its blocking publish uses). Its poll never sleeps longer
        than `_POLL_CAP` seconds, so the wait runs without a timer until the deadline is that
        close: a confirm normally ends it within a millisecond, before a timer is needed.
        """
        if done():
            return
        untimed_until = deadline - _POLL_CAP
        if time.monotonic() < untimed_until:
            self.connection._flush_output(lambda: done() or time.monotonic() >= untimed_until)
        remaining = deadline - time.monotonic()
        if not done() and remaining > 0:
            with _IoloopTimerContext(remaining, self._connection_impl) as timer:
                self.connection._flush_output(timer.is_ready, done)
        if not done():
            raise ConfirmTimeout("no publisher confirm before the deadline")

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        nacked = isinstance(method, pika.spec.Basic.Nack)
        self._confirmed(method.delivery_tag, method.multiple, nacked)

    def _confirmed(self, delivery_tag: int, multiple: bool, nacked: bool) -> None:
        """RabbitMQ confirmed (or nacked) `delivery_tag`, and every tag before it if `multiple`."""
        unconfirmed = self._unconfirmed
        if multiple:
            last = delivery_tag
            tags = []
            for tag in unconfirmed:  # in publish order, so ascending
                if tag > last:
                    break
                tags.append(tag)
        else:
            tags = [delivery_tag]
        for tag in tags:
            item = unconfirmed.pop(tag, None)
            if item is None:
                continue
            if nacked:
                self._refused.append((item, _NACKED))
            elif self._returned:
                # A return always arrives before the confirm of the same message.
                why = self._returned.pop(item.properties.message_id, None)
                if why is not None:
                    self._refused.append((item, why))

    def _on_return(self, _channel: Any, method: Any, properties: Any, _body: bytes) -> None:
        self._returned[properties.message_id] = (
            f"unroutable ({method.reply_text}): no queue {method.routing_key!r} "
            f"bound to exchange {method.exchange or '(default)'!r}"
        )

    def close(self) -> None:
        """Close the connection, ignoring errors (it may be dead already)."""
        try:
            if self.connection.is_open:
                self.connection.close()
        except Exception:
            logger.debug("error closing a producer connection", exc_info=True)


class Producer:
    """A pool of links shared by every thread of the process; see the module docstring."""

    def __init__(self, settings: RabbitmqSettings) -> None:
        self._settings = settings
        self._server = describe_server(settings.url)
        self._idle: list[Link] = []
        self._lock = threading.Lock()
        # Streamed messages of links that died before their confirm came (sent again by the
        # next publish or flush), and refusals of streamed messages not yet raised by `flush`.
        self._orphans: list[Outgoing] = []
        self._refused: list[tuple[Outgoing, str]] = []
        self._streamed = False  # some link may hold streamed messages without their confirm
        _LIVE.add(self)

    def run(self, operation: Callable[[Link], T], *, timeout: float | None = None) -> T:
        """Run `operation` on a link, reconnecting and running it again if the link dies.

        `operation` must be safe to repeat. Streamed messages are settled first, so that the
        operation (a queue count, a purge) sees them where they went.

        Args:
            operation: What to do with the link; pika channel errors propagate.
            timeout: How long to keep trying, in seconds (default `connect_timeout`).

        Raises:
            ConnectionFailed: RabbitMQ could not be reached, or kept dropping the
                connection, for `timeout` seconds.
        """
        if self._streamed:
            self._settle(timeout)
        return self._run(operation, timeout)

    def _run(self, operation: Callable[[Link], T], timeout: float | None) -> T:
        wait = self._settings.connect_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        for attempt in itertools.count():
            link, error = self._acquire()
            if link is not None:
                try:
                    result = operation(link)
                except LINK_ERRORS as exc:
                    self._discard(link)
                    error = exc
                except BaseException:
                    self._release(link, healthy=False)
                    raise
                else:
                    self._release(link, healthy=True)
                    return result
            pause = backoff(attempt)
            if time.monotonic() + pause >= deadline:
                raise ConnectionFailed(
                    f"RabbitMQ at {self._server} not reachable within {wait:g}s: {error!r}"
                ) from error
            logger.debug("RabbitMQ link failed (%r); trying again in %.2fs", error, pause)
            time.sleep(pause)
        raise AssertionError("unreachable")

    def publish(self, batch: Sequence[Outgoing], *, timeout: float | None = None) -> None:
        """Publish `batch`, waiting for every confirm; resend what had an unknown outcome.

        Raises:
            PublishError: RabbitMQ nacked a message or could not route it.
            ConnectionFailed: Not every message was confirmed within the timeout.
        """
        remaining = self._take_orphans() + list(batch)
        wait = self._settings.connect_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait

        def attempt(link: Link) -> list[tuple[Outgoing, str]]:
            return link.publish(remaining, max(deadline, time.monotonic() + 1.0))

        self._raise_refused(self._run(attempt, timeout=wait))

    def stream(self, batch: Sequence[Outgoing]) -> None:
        """Publish `batch` and return without waiting for its confirms.

        The link keeps each message until RabbitMQ confirms it; one whose link dies first is
        published again by the next `publish`, `stream` or `flush`. Without confirms (the
        setting) this is `publish`. A refusal that is read here (of a message streamed before)
        is logged and kept for `flush` to raise.

        Raises:
            ConnectionFailed: No link could be had in time (the messages were then published
                and confirmed on one, or not sent at all).
        """
        if not self._settings.confirm_delivery:
            self.publish(batch)
            return
        if self._orphans:  # a dead link's messages go first, and wait for their confirms
            self.publish(())
        link, _ = self._acquire()
        if link is None:  # RabbitMQ unreachable: the waiting path retries until its timeout
            self.publish(batch)
            return
        remaining = list(batch)
        self._streamed = True
        try:
            refused = link.stream(remaining, time.monotonic() + self._settings.connect_timeout)
        except LINK_ERRORS:
            self._discard(link)
            self.publish(remaining)  # `remaining` holds every message of unknown outcome
            return
        except BaseException:
            self._release(link, healthy=False)
            raise
        self._release(link, healthy=True)
        self._keep_refused(refused)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until RabbitMQ confirmed every streamed message of the idle links.

        Messages whose link died are published again (and confirmed) on another.

        Raises:
            PublishError: RabbitMQ refused a streamed message (nacked it, or could not route
                it) since the last flush.
            ConnectionFailed: RabbitMQ could not be reached in time to resend messages.
        """
        self._settle(timeout)
        with self._lock:
            refused, self._refused = self._refused, []
        self._raise_refused(refused)

    def _settle(self, timeout: float | None) -> None:
        """Read the confirms of streamed messages; refusals are kept for `flush` to raise."""
        wait = self._settings.connect_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        with self._lock:
            links, self._idle = self._idle, []
            self._streamed = False
        for link in links:
            try:
                link.settle(deadline)
            except LINK_ERRORS:
                self._discard(link)
            else:
                self._keep_refused(link.take_refused())
                self._release(link, healthy=True)
        if self._orphans:  # `publish` sends them first
            self.publish((), timeout=max(0.0, deadline - time.monotonic()))

    def _keep_refused(self, refused: list[tuple[Outgoing, str]]) -> None:
        for item, why in refused:
            logger.error("RabbitMQ refused message %s to %r after send() returned: %s",
                         item.properties.message_id, item.routing_key, why)  # fmt: skip
        if refused:
            with self._lock:
                self._refused += refused

    @staticmethod
    def _raise_refused(refused: list[tuple[Outgoing, str]]) -> None:
        if refused:
            item, why = refused[0]
            more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
            raise PublishError(
                f"message {item.properties.message_id} to {item.routing_key!r}: {why}{more}",
                message_id=item.properties.message_id,
            )

    def _take_orphans(self) -> list[Outgoing]:
        with self._lock:
            orphans, self._orphans = self._orphans, []
        return orphans

    def _discard(self, link: Link) -> None:
        """Close a dead link, keeping its unconfirmed messages to be sent again."""
        orphans = link.take_unconfirmed()
        link.close()
        if orphans:
            with self._lock:
                self._orphans += orphans

    def _acquire(self) -> tuple[Link | None, BaseException | None]:
        with self._lock:
            idle = self._idle.pop() if self._idle else None
        while idle is not None:
            if idle.is_fresh():
                return idle, None
            self._discard(idle)
            with self._lock:
                idle = self._idle.pop() if self._idle else None
        try:
            return Link(self._settings), None
        except _AUTH_ERRORS as exc:
            raise ConnectionFailed(
                f"RabbitMQ at {self._server} refused the credentials or vhost: {exc!r}"
            ) from exc
        except LINK_ERRORS as exc:
            return None, exc

    def _release(self, link: Link, *, healthy: bool) -> None:
        if healthy and link.channel.is_open:
            with self._lock:
                self._idle.append(link)
            return
        self._discard(link)

    def close(self) -> None:
        """Settle streamed messages (bounded), then close every idle link.

        A later operation opens a new link. A refusal or a failure to resend is logged here,
        not raised: closing must not fail.
        """
        try:
            self.flush()
        except (PublishError, ConnectionFailed) as exc:
            logger.error("closing the RabbitMQ producer: %s", exc)
        with self._lock:
            idle, self._idle = self._idle, []
        for link in idle:
            link.close()


_LIVE: weakref.WeakSet[Producer] = weakref.WeakSet()


@atexit.register
def _settle_at_exit() -> None:
    """Streamed messages are confirmed (or sent again) before the interpreter exits."""
    for producer in list(_LIVE):
        if producer._streamed or producer._orphans:
            producer.close()
