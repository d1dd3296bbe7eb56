"""A TCP forwarder on loopback that a test can cut (a database outage) and restore.

It runs its own asyncio loop in a thread, so sync and async tests can use it alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = ["CuttableProxy", "free_port", "open_server", "server_address"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_address(dsn: str) -> tuple[str, int]:
    """The host of the server of `dsn` (or its Unix socket folder, as the embedded one's DSN gives) and port."""
    parts = urlsplit(dsn)
    return parse_qs(parts.query).get("host", [parts.hostname or "127.0.0.1"])[0], parts.port or 5432


async def open_server(address: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the server at `address` (see `server_address`): TCP, or its Unix socket."""
    host, port = address
    if host.startswith("/"):
        return await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
    return await asyncio.open_connection(host, port)


class CuttableProxy:
    """Forwards 127.0.0.1:`port` to the server of `dsn`; `cut()` closes every connection and refuses new ones.

    The server may listen on TCP (the machine's PostgreSQL) or on a Unix socket (the embedded one).
    """

    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        self._target = server_address(dsn)
        user = unquote(parts.username or "postgres")
        password = f":{quote(unquote(parts.password))}" if parts.password else ""
        database = parts.path.lstrip("/") or user
        self.port = free_port()
        self.dsn = f"postgresql://{quote(user)}{password}@127.0.0.1:{self.port}/{database}"
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()  # cleared while frozen
        self._flowing.set()

    def __enter__(self) -> CuttableProxy:
        self._thread.start()
        self.restore()
        return self

    def __exit__(self, *exc: object) -> None:
        self._run(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _run(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def restore(self) -> None:
        """Listen again (on the same port)."""
        self._run(self._listen())

    def cut(self) -> None:
        """Stop listening and close every forwarded connection, as a stopped server would."""
        self._run(self._cut())

    def freeze(self) -> None:
        """Keep every connection open but forward nothing (a server that hangs, or a network black hole)."""
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def thaw(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        if server is not None:
            await server.wait_closed()

    async def _close(self) -> None:
        await self._cut()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        await self._flowing.wait()
        try:
            up_reader, up_writer = await open_server(self._target)
        except OSError:
            writer.transport.abort()
            return
        if self._server is None:  # cut while connecting
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        self._writers.difference_update((writer, up_writer))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()
