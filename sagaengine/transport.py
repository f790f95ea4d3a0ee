"""httpx, as the orchestrator uses it on every step: plain HTTP/1.1 to the services, on asyncio.

httpx hands the network to httpcore, and httpcore to anyio by default. Two costs of that showed in
the orchestrator's profile at about a quarter of its CPU per saga:
- before each request, httpcore asks every idle keep-alive connection of the pool whether its
  server closed it (`is_readable`), and anyio answers with a `poll()` system call per
  connection, after a lookup of the raw socket through its typed attributes;
- every read and write runs inside an anyio cancel scope, for its timeout;
- a request goes out in two writes (its head, then its body), two system calls that on loopback
  each carry the cost of delivering to the other process.

`AsyncioBackend` is an httpcore network backend on asyncio's own transports and protocols: a
connection's protocol holds what the server sent, so "has the server closed it, or sent
anything?" is a look at its buffer; a read waits on a future with a timer for its timeout; the
writes of one request are gathered and leave in one system call, before the caller waits for the
answer.
Everything else (HTTP/1.1 with h11, the pool, keep-alive, httpx's API and exceptions) is
unchanged. `transport()` builds an httpx transport on it for `http://` URLs; TLS stays with
httpx's default transport (`start_tls` is not offered here).
"""

import asyncio
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

GATHER_AT_MOST = 64 * 1024  # bytes of one request gathered before they are sent


class _Protocol(asyncio.Protocol):
    """One TCP connection: what arrived and not yet read, and whether the server is done."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False  # the server closed its side, or the connection was lost
        self.error: BaseException | None = None
        self.reader: asyncio.Future[None] | None = None  # a read waiting for data
        self.writable: asyncio.Future[None] | None = None  # a write waiting for room
        self.outgoing: list[bytes] = []  # written, not sent yet (see AsyncioStream.write)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake_reader()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake_reader()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        self._wake_reader()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def pause_writing(self) -> None:
        self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    def _wake_reader(self) -> None:
        if self.reader is not None and not self.reader.done():
            self.reader.set_result(None)


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


async def _wait(future: asyncio.Future[None], timeout: float | None) -> None:
    """Wait for `future`, at most `timeout` seconds (TimeoutError past it)."""
    if timeout is None:
        await future
        return
    timer = asyncio.get_running_loop().call_later(timeout, _expire, future)
    try:
        await future
    finally:
        timer.cancel()


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, protocol: _Protocol):
        self._protocol = protocol

    def _flush(self) -> None:
        protocol = self._protocol
        if protocol.outgoing and protocol.transport is not None:
            if not protocol.transport.is_closing():
                protocol.transport.write(b"".join(protocol.outgoing))
            protocol.outgoing.clear()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        self._flush()  # what was written goes out before the answer is waited for
        if not protocol.buffer and not protocol.closed:
            protocol.reader = asyncio.get_running_loop().create_future()
            try:
                await _wait(protocol.reader, timeout)
            except TimeoutError as exc:
                raise httpcore.ReadTimeout(f"no answer in {timeout} s") from exc
            finally:
                protocol.reader = None
        if protocol.buffer:
            data = bytes(protocol.buffer[:max_bytes])
            del protocol.buffer[:max_bytes]
            return data
        if protocol.error is not None:
            raise httpcore.ReadError(str(protocol.error)) from protocol.error
        return b""  # the server closed the connection

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        protocol = self._protocol
        transport = protocol.transport
        if not buffer:
            return
        if transport is None or transport.is_closing() or protocol.closed:
            raise httpcore.WriteError("the connection is closed")
        # Gathered: the head and the body of a request go out together, when the answer is
        # first read (at the latest on the next turn of the loop).
        if not protocol.outgoing:
            asyncio.get_running_loop().call_soon(self._flush)
        protocol.outgoing.append(buffer)
        if sum(map(len, protocol.outgoing)) >= GATHER_AT_MOST:
            self._flush()  # a large body goes out as it comes, within the flow control below
        if protocol.writable is not None:  # the kernel's buffer is full: wait for room
            try:
                await _wait(protocol.writable, timeout)
            except TimeoutError as exc:
                raise httpcore.WriteTimeout(f"could not send in {timeout} s") from exc

    async def aclose(self) -> None:
        if self._protocol.transport is not None:
            self._flush()
            self._protocol.transport.close()

    async def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("TLS is left to httpx's default transport")

    def get_extra_info(self, info: str) -> Any:
        protocol = self._protocol
        if info == "is_readable":
            # Idle and readable means the server closed it (or broke the protocol): either way
            # httpcore drops it. No system call: the protocol saw whatever arrived.
            return protocol.closed or bool(protocol.buffer)
        if protocol.transport is None:
            return None
        if info == "socket":
            return protocol.transport.get_extra_info("socket")
        if info == "client_addr":
            return protocol.transport.get_extra_info("sockname")
        if info == "server_addr":
            return protocol.transport.get_extra_info("peername")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        try:
            async with asyncio.timeout(timeout):
                _, protocol = await loop.create_connection(_Protocol, host, port, local_addr=local)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"no connection to {host}:{port} in {timeout} s") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"{host}:{port}: {exc}") from exc
        assert protocol.transport is not None
        sock = protocol.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for option in socket_options or ():
                sock.setsockopt(*option)
        return AsyncioStream(protocol)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are left to httpx's default transport")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _Transport(httpx.AsyncHTTPTransport):
    def __init__(self, limits: httpx.Limits, retries: int = 0):
        super().__init__(limits=limits, retries=retries)
        # httpx builds its pool without a way to name the network backend: the same pool, with
        # this one (tests/unit/test_transport.py checks it is the pool httpx sends through).
        self._pool = httpcore.AsyncConnectionPool(
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            retries=retries,
            network_backend=AsyncioBackend(),
        )


def transport(base_url: str, limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    """The transport for calls to `base_url`: on asyncio for plain HTTP, httpx's own for TLS."""
    if httpx.URL(base_url).scheme == "http":
        return _Transport(limits)
    return httpx.AsyncHTTPTransport(limits=limits)
