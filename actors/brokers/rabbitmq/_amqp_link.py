"""One AMQP connection with one channel, read by one thread at a time and written by any.

The worker's consumer (`_consumer`) runs on this instead of a general AMQP client: the thread
that reads (`read_step`, one at a time, not always the same one) parses frames (deliveries,
confirms, replies) straight from the socket buffer, and any thread writes (acks, publishes,
requests) under a lock, so that an ack never waits for another thread to wake up. Heartbeats
are sent and checked by whichever thread reads.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import pika

from actors.brokers.rabbitmq import _amqp_codec as wire

logger = logging.getLogger("actors.brokers.rabbitmq")

CHANNEL = 1
_FRAME_MAX = 131072
_READ_SIZE = 262144
_TICK = 0.2  # seconds between heartbeat checks and `on_tick` calls
_SEND_TIMEOUT = 30.0  # seconds a write may block (RabbitMQ not reading) before the link is cut


def _timeval(seconds: float) -> bytes:
    """A ``struct timeval`` for SO_RCVTIMEO/SO_SNDTIMEO."""
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


class LinkClosed(Exception):
    """The connection is gone: closed by the server, cut, or closed by us."""


class LinkEvents(Protocol):
    """What the reading thread reports (called on that thread)."""

    def on_deliver(
        self, consumer_tag: str, tag: int, redelivered: bool, props: wire.Properties, body: bytes
    ) -> None: ...

    def on_return(self, reason: str, routing_key: str, props: wire.Properties) -> None: ...

    def on_confirm(self, tag: int, multiple: bool, nacked: bool) -> None: ...

    def on_cancelled(self, consumer_tag: str) -> None: ...

    def on_tick(self) -> None:
        """Called every `_TICK` seconds or so, busy or idle."""


class AmqpLink:
    """A connection to RabbitMQ with channel 1 open in confirm mode."""

    def __init__(self, params: pika.URLParameters, events: LinkEvents) -> None:
        self._params = params
        self._events = events
        self._sock: socket.socket | None = None
        self._tls = params.ssl_options is not None
        self._write_lock = threading.Lock()
        # TLS allows one thread in the SSL object at a time; plain TCP is full duplex.
        self._read_guard: Any = self._write_lock if self._tls else contextlib.nullcontext()
        self._buf = bytearray()
        # Requests awaiting their reply: (reply method, consumer tag or None, callback).
        self._waiting: collections.deque[tuple[tuple[int, int], str | None, Callable[[], None]]]
        self._waiting = collections.deque()
        self._content: tuple[Any, ...] | None = None  # the method awaiting its header/body
        self._returning = False  # that method is a basic.return (else a basic.deliver)
        self._expected: tuple[int, int] | None = None  # a handshake reply being awaited
        self._reply: Any = None
        self._replied = True
        self._props: wire.Properties | None = None
        self._body_size = 0
        self._parts: list[bytes] = []
        self._received = 0
        self.frame_max = _FRAME_MAX
        self.heartbeat = 0
        self._last_read = self._last_write = self._last_tick = time.monotonic()
        self._closing = False
        self._closed = threading.Event()
        self._reader: threading.Thread | None = None
        self.closed_reason = ""

    # -- opening (on the reading thread) -------------------------------------------------------

    def open(self) -> None:
        """Connect, authenticate, open the channel and select confirms.

        Raises:
            OSError: The socket could not connect.
            LinkClosed: RabbitMQ refused us (authentication, vhost) or hung up.
        """
        params = self._params
        timeout = float(params.socket_timeout or 10.0)
        sock = socket.create_connection((params.host, params.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if params.ssl_options is not None:
            options = params.ssl_options
            sock = options.context.wrap_socket(sock, server_hostname=options.server_hostname)
        self._sock = sock
        deadline = time.monotonic() + float(params.stack_timeout or timeout)
        self._send(wire.PROTOCOL_HEADER)
        self._await(wire.CONNECTION_START, deadline)
        credentials = params.credentials
        self._send_method(
            wire.CONNECTION_START_OK,
            wire.start_ok(self._client_properties(), credentials.username, credentials.password),
            channel=0,
        )
        channel_max, frame_max, heartbeat = self._await(wire.CONNECTION_TUNE, deadline)
        self.frame_max = min(frame_max or _FRAME_MAX, _FRAME_MAX)
        self.heartbeat = int(params.heartbeat if params.heartbeat is not None else heartbeat)
        self._send_method(
            wire.CONNECTION_TUNE_OK,
            wire.tune_ok(channel_max, self.frame_max, self.heartbeat),
            channel=0,
        )
        self._send_method(wire.CONNECTION_OPEN, wire.connection_open(params.virtual_host), 0)
        self._await(wire.CONNECTION_OPEN_OK, deadline)
        self._send_method(wire.CHANNEL_OPEN, wire.shortstr(""))
        self._await(wire.CHANNEL_OPEN_OK, deadline)
        self._send_method(wire.CONFIRM_SELECT, b"\x00")
        self._await(wire.CONFIRM_SELECT_OK, deadline)
        if self._tls:
            sock.settimeout(_TICK)
        else:
            # Blocking calls bounded by the kernel (SO_RCVTIMEO/SO_SNDTIMEO) rather than by
            # Python's socket timeout, which polls before every recv and send: one system
            # call, and one release of the GIL, less per read and per ack.
            sock.settimeout(None)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(_TICK))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(_SEND_TIMEOUT))

    def _client_properties(self) -> dict[str, Any]:
        properties = dict(self._params.client_properties or {})
        properties["capabilities"] = {
            "consumer_cancel_notify": True,
            "publisher_confirms": True,
            "basic.nack": True,
            "connection.blocked": True,
            "authentication_failure_close": True,
        }
        return properties

    def call(self, method: tuple[int, int], args: bytes, reply: tuple[int, int]) -> None:
        """Send `method` and read until its `reply` arrives; before `run`, on its thread."""
        self._send_method(method, args)
        self._await(reply, time.monotonic() + float(self._params.socket_timeout or 10.0))

    def _await(self, method: tuple[int, int], deadline: float) -> Any:
        """Read frames until `method` arrives (before `run`); return its arguments."""
        self._expected = method
        self._reply = None
        self._replied = False
        try:
            while not self._replied:
                if time.monotonic() > deadline:
                    raise LinkClosed(f"RabbitMQ did not answer {method} in time")
                self._read_once()
        finally:
            self._expected = None
        return self._reply

    # -- requests (any thread) ------------------------------------------------------------------

    def request(
        self,
        method: tuple[int, int],
        args: bytes,
        reply: tuple[int, int],
        consumer_tag: str | None = None,
    ) -> None:
        """Send `method` and return once RabbitMQ's `reply` was read (by the reading thread)."""
        answered = threading.Event()
        self.request_async(method, args, reply, answered.set, consumer_tag)
        if not answered.wait(float(self._params.socket_timeout or 10.0)):
            raise LinkClosed(f"RabbitMQ did not answer {method} in time")

    def request_async(
        self,
        method: tuple[int, int],
        args: bytes,
        reply: tuple[int, int],
        on_reply: Callable[[], None],
        consumer_tag: str | None = None,
    ) -> None:
        """Send `method`; call `on_reply` on the reading thread when `reply` arrives.

        Replies of one kind come in the order of their requests, but not across kinds: a
        ``consume-ok`` or ``cancel-ok`` is sent by the queue and can come after the
        ``qos-ok`` of a later request. So a reply goes to the oldest request waiting for
        that kind, and for consumer replies for that `consumer_tag` (several queues answer
        in any order).
        """
        data = wire.method_frame(CHANNEL, method, args)
        with self._write_lock:
            if self._sock is None or self._closed.is_set():
                raise LinkClosed(self.closed_reason or "the connection is closed")
            self._waiting.append((reply, consumer_tag, on_reply))
            self._write(data)

    def send_method(self, method: tuple[int, int], args: bytes) -> None:
        """Send a method that has no reply (ack, nack)."""
        self._send(wire.method_frame(CHANNEL, method, args))

    def send_frames(self, data: bytes) -> None:
        """Send frames built with `_amqp_codec` (e.g. a batch of acks)."""
        self._send(data)

    def publish(
        self, routing_key: str, props: wire.Properties, body: bytes, on_sent: Callable[[], Any]
    ) -> Any:
        """Publish `body` to `routing_key` on the default exchange, mandatory.

        `on_sent` runs under the write lock just before the frames go out, so that publish
        sequence numbers follow the order on the wire; its result is returned.
        """
        data = wire.method_frame(CHANNEL, wire.BASIC_PUBLISH, wire.publish("", routing_key, True))
        data += wire.content_frames(CHANNEL, props, body, self.frame_max)
        with self._write_lock:
            result = on_sent()
            self._write(data)
        return result

    def _send_method(self, method: tuple[int, int], args: bytes, channel: int = CHANNEL) -> None:
        self._send(wire.method_frame(channel, method, args))

    def _send(self, data: bytes) -> None:
        with self._write_lock:
            self._write(data)

    def _write(self, data: bytes) -> None:
        sock = self._sock
        if sock is None or self._closed.is_set():
            raise LinkClosed(self.closed_reason or "the connection is closed")
        try:
            sock.sendall(data)
        except OSError as exc:
            self.cut(f"write failed: {exc}")
            raise LinkClosed(self.closed_reason) from exc
        self._last_write = time.monotonic()

    # -- closing (any thread) -------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Close the connection politely (bounded), then the socket."""
        if self._sock is None or self._closed.is_set():
            return
        self._closing = True
        try:
            self._send_method(wire.CONNECTION_CLOSE, wire.close_args(200, "worker closing"), 0)
        except LinkClosed:
            return
        reading_here = threading.current_thread() is self._reader
        if not reading_here and not self._closed.wait(timeout):
            self.cut("no close-ok from RabbitMQ")

    def cut(self, reason: str) -> None:
        """Drop the socket; the reading thread then stops with `reason`."""
        if not self.closed_reason:
            self.closed_reason = reason
        self._closed.set()
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # -- reading (one thread) -------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the connection is closed, cut or broken."""
        return self._closed.is_set()

    def run(self) -> None:
        """Read and dispatch frames until the connection closes, then `finish`.

        Returns after a close we asked for; raises `LinkClosed` when the server closed the
        connection or the channel, or the link broke.
        """
        self.serve_from_here()
        try:
            while not self._closed.is_set():
                self.read_step()
        finally:
            self.finish()

    def serve_from_here(self) -> None:
        """Make the calling thread the link's own: `close` from it does not wait for the reply."""
        self._reader = threading.current_thread()

    def read_step(self) -> None:
        """Read once (at most `_TICK` seconds) and dispatch what came; keep the link alive.

        Any thread may call this, one at a time. It never raises: when the link breaks (a
        broken socket, garbled frames, missed heartbeats, a close by RabbitMQ) it is cut, and
        `closed` turns True. So is it when a callback fails: RabbitMQ then gives back what
        was unsettled, rather than the reading thread dying.
        """
        if self._closed.is_set():
            return  # what is still buffered belongs to a connection that is gone
        try:
            self._read_once()
            self._keep_alive()
        except (LinkClosed, OSError, wire.ProtocolError) as exc:
            self.cut(str(exc) or type(exc).__name__)
        except Exception as exc:
            logger.exception("error while reading from RabbitMQ; dropping the connection")
            self.cut(f"{type(exc).__name__}: {exc}")
        except BaseException as exc:  # an interrupt meant for an actor: not parsed twice
            self.cut(f"interrupted while reading: {type(exc).__name__}")
            raise

    def finish(self) -> None:
        """Close the socket and wake the requesters, once no thread reads any more.

        Raises:
            LinkClosed: Unless the link closed because we asked it to.
        """
        self._closed.set()
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        # Wake the requesters; they find the link closed. Popped one by one: a woken
        # thread may append meanwhile (its request then fails on the closed link).
        while self._waiting:
            self._waiting.popleft()[2]()
        if not self._closing or self.closed_reason:
            raise LinkClosed(self.closed_reason or "the connection closed")

    def _read_once(self) -> None:
        sock = self._sock
        if sock is None:
            raise LinkClosed(self.closed_reason or "the connection is closed")
        if self._tls:
            data = self._read_tls(sock)
        else:
            try:
                data = sock.recv(_READ_SIZE)
            except (BlockingIOError, TimeoutError):  # SO_RCVTIMEO (or the handshake timeout)
                return
            if not data:
                raise LinkClosed(self.closed_reason or "RabbitMQ closed the socket")
        if data:
            self._last_read = time.monotonic()
            self._buf += data
            self._parse()

    def _read_tls(self, sock: Any) -> bytes:
        if not sock.pending():
            readable, _, _ = select.select([sock], [], [], _TICK)
            if not readable:
                return b""
        with self._read_guard:
            try:
                data: bytes = sock.recv(_READ_SIZE)
            except (ssl.SSLWantReadError, TimeoutError):
                return b""
        if not data:
            raise LinkClosed(self.closed_reason or "RabbitMQ closed the socket")
        return data

    def _keep_alive(self) -> None:
        now = time.monotonic()
        if now - self._last_tick >= _TICK:
            self._last_tick = now
            self._events.on_tick()
        if not self.heartbeat:
            return
        if now - self._last_read > 2 * self.heartbeat:
            raise LinkClosed(f"missed heartbeats: nothing from RabbitMQ for {2 * self.heartbeat}s")
        if now - self._last_write > self.heartbeat / 2:
            self._send(wire.HEARTBEAT_FRAME)

    def _parse(self) -> None:
        buf = self._buf
        size = len(buf)
        pos = 0
        read_head = wire.read_frame_head
        view = memoryview(buf)  # slices of a view copy once; released before buf shrinks
        try:
            while size - pos > 7:
                kind, channel, length = read_head(view, pos)
                end = pos + 7 + length
                if end >= size:
                    break
                if view[end] != wire.FRAME_END:
                    raise wire.ProtocolError("frame without its end octet")
                if kind == wire.FRAME_BODY:
                    self._on_body(bytes(view[pos + 7 : end]))
                elif kind == wire.FRAME_METHOD:
                    self._on_method(channel, view, pos + 7)
                elif kind == wire.FRAME_HEADER:
                    self._on_header(view, pos + 7, end)
                elif kind != wire.FRAME_HEARTBEAT:
                    raise wire.ProtocolError(f"unknown frame type {kind}")
                pos = end + 1
        finally:
            view.release()
        del buf[:pos]

    def _on_method(self, channel: int, buf: memoryview, pos: int) -> None:
        method = wire.read_method_id(buf, pos)
        pos += 4
        if method == wire.BASIC_DELIVER:
            self._content = wire.read_deliver(buf, pos)
            self._returning = False
        elif method == wire.BASIC_ACK or method == wire.BASIC_NACK:
            tag, multiple, _ = wire.read_ack(buf, pos)
            self._events.on_confirm(tag, multiple, method == wire.BASIC_NACK)
        elif method == wire.BASIC_RETURN:
            self._content = wire.read_return(buf, pos)
            self._returning = True
        elif method == wire.BASIC_CANCEL:
            self._events.on_cancelled(wire.read_shortstr(buf, pos)[0])
        elif method == wire.CONNECTION_CLOSE or method == wire.CHANNEL_CLOSE:
            self._on_close(method, *wire.read_close(buf, pos))
        elif method == wire.CONNECTION_CLOSE_OK:
            self._closed.set()
        elif method == wire.CONNECTION_BLOCKED:
            logger.warning("RabbitMQ blocked this connection (%s)", wire.read_shortstr(buf, pos)[0])
        elif method == wire.CONNECTION_UNBLOCKED:
            logger.info("RabbitMQ unblocked this connection")
        elif method == self._expected and not self._replied:
            self._reply = self._handshake_args(method, buf, pos)
            self._replied = True
        elif not self._answer(method, buf, pos):
            raise wire.ProtocolError(f"unexpected method {method} on channel {channel}")

    def _answer(self, method: tuple[int, int], buf: memoryview, pos: int) -> bool:
        """Call back the request that `method` answers; False if none waits for it."""
        tag = None
        if method == wire.BASIC_CONSUME_OK or method == wire.BASIC_CANCEL_OK:
            tag = wire.read_shortstr(buf, pos)[0]
        # A snapshot: other threads only append, and only this thread removes.
        for index, (reply, consumer_tag, on_reply) in enumerate(tuple(self._waiting)):
            if reply == method and (consumer_tag is None or consumer_tag == tag):
                del self._waiting[index]
                on_reply()
                return True
        return False

    @staticmethod
    def _handshake_args(method: tuple[int, int], buf: memoryview, pos: int) -> Any:
        return wire.read_tune(buf, pos) if method == wire.CONNECTION_TUNE else None

    def _on_close(self, method: tuple[int, int], code: int, text: str) -> None:
        what = "connection" if method == wire.CONNECTION_CLOSE else "channel"
        with contextlib.suppress(LinkClosed):
            if what == "connection":
                self._send_method(wire.CONNECTION_CLOSE_OK, b"", 0)
            else:
                self._send_method(wire.CHANNEL_CLOSE_OK, b"")
        self.cut(f"RabbitMQ closed the {what}: {code} {text}")
        raise LinkClosed(self.closed_reason)

    def _on_header(self, buf: memoryview, pos: int, end: int) -> None:
        if self._content is None:
            raise wire.ProtocolError("content header without a method")
        self._body_size = wire.read_body_size(buf, pos)
        self._props = wire.decode_properties(buf, pos + 12, end)
        self._received = 0
        if self._body_size == 0:
            self._content_done(b"")

    def _on_body(self, data: bytes) -> None:
        if self._props is None:
            raise wire.ProtocolError("content body without a header")
        if self._received == 0 and len(data) == self._body_size:
            self._content_done(data)
            return
        self._parts.append(data)
        self._received += len(data)
        if self._received >= self._body_size:
            body = b"".join(self._parts)
            self._parts.clear()
            self._content_done(body)

    def _content_done(self, body: bytes) -> None:
        content, props = self._content, self._props
        self._content = self._props = None
        assert content is not None and props is not None
        if self._returning:
            _, text, _, routing_key = content
            self._events.on_return(text, routing_key, props)
        else:
            consumer_tag, tag, redelivered, _ = content
            self._events.on_deliver(consumer_tag, tag, redelivered, props, body)
