"""Issue 10.5 through a real proxy: a loopback HTTP proxy that sets one forwarding header (as nginx's
`$proxy_add_x_forwarded_for` does) in front of a real `uvicorn`; a client behind it that sends the
other header, different on every request, is still one visitor."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from types import TracebackType

import anyio.to_thread
import asyncpg
import httpx
import pytest

from .server import UvicornProcess, stored_counts

CLIENT = "127.0.0.2"  # the client's own loopback address; the proxy is 127.0.0.1


class HeaderSettingProxy:
    """Forwards one HTTP/1.1 request per connection to 127.0.0.1:`upstream`, setting `header`:
    `X-Forwarded-For` gets the peer appended to what the client sent, `Forwarded` gets `for=<peer>`
    appended as a new element. Every other header, the client's copy of the other one included,
    passes through untouched, as real proxies do."""

    def __init__(self, upstream: int, header: str) -> None:
        self.upstream = upstream
        self.header = header
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> HeaderSettingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername")[0]).encode()
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head[:-4].split(b"\r\n")
        kept, existing = [], []
        for line in lines:
            name = line.partition(b":")[0].strip().lower()
            if name == self.header.encode():
                existing.append(line.partition(b":")[2].strip())
            elif name != b"connection":
                kept.append(line)
        added = peer if self.header == "x-forwarded-for" else b"for=" + peer
        kept.append(self.header.encode() + b": " + b", ".join([*existing, added]))
        kept.append(b"Connection: close")
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        up_writer.write(b"\r\n".join([request_line, *kept]) + b"\r\n\r\n")  # GET: no body
        await up_writer.drain()
        writer.write(await up_reader.read())  # until uvicorn closes (Connection: close)
        await writer.drain()
        for w in (writer, up_writer):
            w.close()


@pytest.mark.slow
@pytest.mark.parametrize(("believed", "spoofed"), [("x-forwarded-for", "forwarded"), ("forwarded", "x-forwarded-for")])
async def test_a_client_behind_a_real_proxy_cannot_invent_visitors(
    pg_dsn: str, schema: str, tmp_path: Path, believed: str, spoofed: str
) -> None:
    env = {
        "USAGE_STATS_DSN": pg_dsn,
        "USAGE_STATS_SCHEMA": schema,
        "USAGE_STATS_USER_IDS": "database",  # distinct keys stored as the cut networks, to compare
        "USAGE_STATS_TRUSTED_PROXIES": "127.0.0.1/32",
        "USAGE_STATS_FORWARDED_HEADER": believed,
        "FORWARDED_ALLOW_IPS": "192.0.2.254",  # uvicorn's own proxy-headers step leaves scope["client"] alone
    }
    server = UvicornProcess(tmp_path / "uvicorn.log", env)
    try:
        server.wait_ready()
        transport = httpx.AsyncHTTPTransport(local_address=CLIENT)
        async with HeaderSettingProxy(server.port, believed) as proxy, httpx.AsyncClient(transport=transport) as c:
            for n in range(50):
                fake = f"for=203.0.{n}.9" if spoofed == "forwarded" else f"203.0.{n}.9"
                response = await c.get(f"http://127.0.0.1:{proxy.port}/items/{n}", headers={spoofed: fake})
                assert response.status_code == 200
        await anyio.to_thread.run_sync(server.stop, signal.SIGTERM)  # the final flush stores everything
    finally:
        server.close()
    assert (await stored_counts(pg_dsn, schema))[("page", "/items/{item_id}")] == 50
    conn = await asyncpg.connect(pg_dsn)
    try:
        keys = await conn.fetch(f'SELECT category, key FROM "{schema}".seen_keys ORDER BY 1, 2')
    finally:
        await conn.close()
    assert [(r["category"], bytes(r["key"])) for r in keys] == [("visitor", b"127.0.0.0")]
