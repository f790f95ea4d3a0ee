"""A TCP proxy that drops connections on purpose: the network faults of the chaos run.

Put between the orchestrator and a service, it forwards bytes both ways and, at each chunk, with
probability `drop_rate` closes both sides: before the request reached the service (the call never
happened) or after (the service acted, the answer is lost). Loopback only.
"""

import asyncio
import random
import threading


class FlakyProxy:
    def __init__(self, listen_port: int, target_port: int, seed: int | None = None):
        self.listen_port = listen_port
        self.target_port = target_port
        self.drop_rate = 0.0
        self.dropped = 0
        self._random = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.listen_port)

    def _drop_now(self) -> bool:
        if self.drop_rate and self._random.random() < self.drop_rate:
            self.dropped += 1
            return True
        return False

    async def _pipe(self, reader, writer, peer_writer) -> None:
        try:
            while chunk := await reader.read(65536):
                if self._drop_now():
                    break
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            peer_writer.close()

    async def _handle(self, client_reader, client_writer) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            client_writer.close()  # the service is down: a refused connection, as without us
            return
        await asyncio.gather(
            self._pipe(client_reader, upstream_writer, client_writer),
            self._pipe(upstream_reader, client_writer, upstream_writer),
        )
