"""A fault-injecting TCP proxy on 127.0.0.1, driven from synchronous tests.

The proxy runs an asyncio loop in its own daemon thread. Point a client at ``proxy.port`` instead of
the server and break the link on purpose:

* ``cut()``: reset (RST, ``SO_LINGER`` 0) both sides of every open connection;
* ``stall()`` / ``resume()``: stop and restart forwarding both ways without closing anything, a
  half-open link (the proxy stops reading, so TCP flow control pushes back on both peers);
* ``slow(delay)``: sleep ``delay`` seconds before forwarding each chunk;
* ``refuse(True)``: accept new connections and reset them at once;
* ``cut_after_bytes(n)``: forward ``n`` more client-to-server bytes, then ``cut()`` (mid-frame).

Every control call returns once the proxy's loop has applied it. A reset by either peer is passed
on as a reset to the other; an orderly close is passed on as a half-close.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from tests.support.net import LOCALHOST

CHUNK = 65536
CONTROL_TIMEOUT = 10.0


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close a stream with an RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client side, the server side and the two pump tasks."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    pumps: list[asyncio.Task[None]] = field(default_factory=list)

    def reset(self) -> None:
        """RST both sides and stop pumping."""
        _reset(self.client)
        _reset(self.server)
        for pump in self.pumps:
            pump.cancel()


class TcpProxy:
    """Forward 127.0.0.1:<port> to ``target_host:target_port``, with faults on demand."""

    def __init__(
        self,
        target_port: int,
        target_host: str = LOCALHOST,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.target_port = target_port
        self.target_host = target_host
        self.tls = tls  # terminate TLS from clients with this server context (plain to target)
        self.port = 0
        self.connections_accepted = 0
        self.connections_refused = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._delay = 0.0
        self._refusing = False
        self._closed = False
        self._byte_budget: int | None = None

    @property
    def open_connections(self) -> int:
        """Connections currently being forwarded."""
        return len(self._links)

    def start(self) -> int:
        """Start listening on a free port of 127.0.0.1 and return it."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"tcp-proxy->{self.target_port}", daemon=True
        )
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, LOCALHOST, 0, ssl=self.tls), self._loop
        )
        self._server = future.result(CONTROL_TIMEOUT)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def cut(self) -> None:
        """Reset every open connection, both sides."""
        self._apply(self._cut_links)

    def stall(self) -> None:
        """Stop forwarding in both directions, keeping every connection open."""
        self._apply(self._flowing.clear)

    def resume(self) -> None:
        """Forward again after ``stall()``."""
        self._apply(self._flowing.set)

    def slow(self, delay_per_chunk: float) -> None:
        """Delay each forwarded chunk by ``delay_per_chunk`` seconds (0 turns it off)."""
        self._apply(lambda: setattr(self, "_delay", delay_per_chunk))

    def refuse(self, refusing: bool = True) -> None:
        """While ``refusing``, reset new connections as soon as they are accepted."""
        self._apply(lambda: setattr(self, "_refusing", refusing))

    def cut_after_bytes(self, n: int) -> None:
        """Forward ``n`` more client-to-server bytes (all connections), then ``cut()`` once."""
        self._apply(lambda: setattr(self, "_byte_budget", n))

    def stop(self) -> None:
        """Stop listening, reset every connection and end the proxy's thread."""
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(CONTROL_TIMEOUT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CONTROL_TIMEOUT)
        self._loop.close()
        self._loop = None
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _apply(self, change: Callable[[], object]) -> None:
        """Run ``change`` on the proxy's loop and wait until it has run."""
        if self._loop is None:
            raise RuntimeError("TcpProxy is not started")

        async def run() -> None:
            change()

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(CONTROL_TIMEOUT)

    def _cut_links(self) -> None:
        """Reset every open connection (loop thread)."""
        for link in list(self._links):
            link.reset()

    async def _shutdown(self) -> None:
        """Close the listener, reset every connection, wait for the handlers (loop thread)."""
        self._closed = True
        if self._server is not None:
            self._server.close()
        self._cut_links()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=CONTROL_TIMEOUT)

    async def _handle(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        """Serve one accepted connection until both directions are done."""
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(client_reader, client_writer)
        finally:
            self._handlers.discard(task)

    async def _serve(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        """Connect upstream, then pump both ways; refused or failed connections get an RST."""
        self.connections_accepted += 1
        if self._refusing or self._closed:
            self.connections_refused += 1
            _reset(client_writer)
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            _reset(client_writer)
            return
        link = _Link(client_writer, server_writer)
        if self._closed:
            link.reset()
            return
        self._links.add(link)
        link.pumps = [
            asyncio.create_task(self._pump(link, client_reader, server_writer, upstream=True)),
            asyncio.create_task(self._pump(link, server_reader, client_writer, upstream=False)),
        ]
        await asyncio.gather(*link.pumps, return_exceptions=True)
        self._links.discard(link)
        client_writer.close()
        server_writer.close()

    async def _pump(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: bool,
    ) -> None:
        """Copy one direction, honouring stall, delay and the byte budget."""
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(CHUNK)
                if not data:
                    writer.write_eof()
                    return
                if self._delay:
                    await asyncio.sleep(self._delay)
                await self._flowing.wait()
                data, cut = self._spend(data) if upstream else (data, False)
                writer.write(data)
                await writer.drain()
                if cut:
                    self._cut_links()
                    return
        except OSError:
            link.reset()

    def _spend(self, data: bytes) -> tuple[bytes, bool]:
        """Charge client-to-server bytes to the budget: the part to forward and whether to cut."""
        if self._byte_budget is None:
            return data, False
        if len(data) < self._byte_budget:
            self._byte_budget -= len(data)
            return data, False
        data, self._byte_budget = data[: self._byte_budget], None
        return data, True
