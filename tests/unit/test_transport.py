"""The orchestrator's httpx transport on asyncio (sagaengine/transport.py), against a small
HTTP/1.1 server on loopback: answers, keep-alive, a server that closes an idle connection, and
the failures the clients classify (timeouts, refused connections) as httpx raises them."""

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from sagaengine.transport import AsyncioBackend, _Transport, transport

LIMITS = httpx.Limits(max_connections=10, max_keepalive_connections=10, keepalive_expiry=5)


def _answer(body: bytes = b'{"ok":true}', close: bool = False) -> bytes:
    head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return (head + ("connection: close\r\n" if close else "") + "\r\n").encode() + body


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[asyncio.Server, str, list[int]]:
    """A server calling `handler(reader, writer, n)` per connection; returns the connection
    numbers it saw, in order."""
    seen: list[int] = []

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(len(seen) + 1)
        try:
            await handler(reader, writer, seen[-1])
        finally:
            writer.close()

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", seen


async def _requests(reader: asyncio.StreamReader, count: int | None = None):
    """Yield once per request read from the connection (its head, and a body it announced)."""
    served = 0
    while count is None or served < count:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.lower().split(b"\r\n")
        length = next((int(x.split(b":")[1]) for x in lines if x.startswith(b"content-length")), 0)
        await reader.readexactly(length)
        served += 1
        yield head


def test_the_transport_httpx_sends_through_is_the_asyncio_one():
    made = transport("http://service:8001", LIMITS)
    assert isinstance(made, _Transport)
    assert isinstance(made._pool._network_backend, AsyncioBackend)
    assert not isinstance(transport("https://service:8001", LIMITS), _Transport)


def test_answers_come_back_and_a_connection_is_kept_alive():
    async def keep_alive(reader, writer, _):
        async for _ in _requests(reader):
            writer.write(_answer())
            await writer.drain()

    async def scenario():
        server, url, seen = await _serve(keep_alive)
        async with server, httpx.AsyncClient(base_url=url, transport=transport(url, LIMITS)) as c:
            answers = [(await c.post("/x", json={"n": n})).json() for n in range(3)]
        return answers, seen

    answers, connections = asyncio.run(scenario())
    assert answers == [{"ok": True}] * 3
    assert connections == [1]


def test_a_connection_the_server_closed_while_idle_is_not_reused():
    async def one_then_close(reader, writer, _):
        async for _ in _requests(reader, count=1):
            writer.write(_answer())
            await writer.drain()

    async def scenario():
        server, url, seen = await _serve(one_then_close)
        made = transport(url, LIMITS)
        async with server, httpx.AsyncClient(base_url=url, transport=made) as c:
            first = await c.get("/x")
            pool = made._pool
            for _ in range(1000):  # until the server's close has reached the client's protocol
                if not pool.connections or pool.connections[0].has_expired():
                    break
                await asyncio.sleep(0.001)
            noticed = not pool.connections or pool.connections[0].has_expired()
            second = await c.get("/x")
        return first.status_code, noticed, second.status_code, seen

    assert asyncio.run(scenario()) == (200, True, 200, [1, 2])


def test_a_server_that_does_not_answer_in_time_is_a_read_timeout():
    async def silent(reader, writer, _):
        async for _ in _requests(reader, count=1):
            await asyncio.sleep(1)

    async def scenario():
        server, url, _ = await _serve(silent)
        async with server, httpx.AsyncClient(base_url=url, transport=transport(url, LIMITS)) as c:
            with pytest.raises(httpx.ReadTimeout):
                await c.get("/x", timeout=0.1)

    asyncio.run(scenario())


def test_a_refused_connection_is_a_connect_error():
    async def scenario():
        server, url, _ = await _serve(lambda *_: asyncio.sleep(0))
        server.close()
        await server.wait_closed()
        async with httpx.AsyncClient(base_url=url, transport=transport(url, LIMITS)) as c:
            with pytest.raises(httpx.ConnectError):
                await c.get("/x")

    asyncio.run(scenario())


def test_a_server_that_hangs_up_mid_answer_is_a_transport_error():
    async def half(reader, writer, _):
        async for _ in _requests(reader, count=1):
            writer.write(_answer()[:-4])
            await writer.drain()

    async def scenario():
        server, url, _ = await _serve(half)
        async with server, httpx.AsyncClient(base_url=url, transport=transport(url, LIMITS)) as c:
            with pytest.raises(httpx.TransportError):
                await c.get("/x")

    asyncio.run(scenario())


def test_a_large_body_goes_out_whole():
    body = b"x" * (3 * 1024 * 1024)

    async def echo_length(reader, writer, _):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.lower().split(b"\r\n")
        length = next(int(x.split(b":")[1]) for x in lines if x.startswith(b"content-length"))
        received = len(await reader.readexactly(length))
        writer.write(_answer(str(received).encode()))
        await writer.drain()

    async def scenario():
        server, url, _ = await _serve(echo_length)
        async with server, httpx.AsyncClient(base_url=url, transport=transport(url, LIMITS)) as c:
            return (await c.post("/x", content=body)).json()

    assert asyncio.run(scenario()) == len(body)
