"""A loopback proxy that reads PostgreSQL's message framing and injects a fault at a chosen statement.

A fault is armed for the next execution of a statement whose SQL contains a given text (a simple
query such as `COPY`, or a prepared statement when it is bound; `COMMIT` and `ROLLBACK` match only
those commands, not a `CREATE TEMPORARY TABLE ... ON COMMIT DROP`), optionally only in a transaction
that executed a statement containing another text before (`within`). Actions:

- `cut_before`: close both connections instead of forwarding the statement (the server never gets it);
- `cut_after`: forward it, wait for the server's answer, drop the answer and close both connections
  (a lost reply: for `COMMIT`, the server committed and the client cannot know);
- `kill_before`: `pg_terminate_backend` the connection's server process, then forward the statement;
- `kill_after`: forward it, wait for the server's answer, `pg_terminate_backend` the server process,
  drop the answer and close the client's connection;
- `timeout`: run `SET LOCAL statement_timeout` to `TIMEOUT_MS` just before the statement (its answer is
  kept from the client), so that the statement meets a real statement timeout if it runs longer (the
  test makes it: see `SLOW_WHEN_TIMED_OUT`).

It runs its own asyncio loop in a thread, so sync and async tests can use it alike. Connections
through it use `sslmode=disable`, so every byte is a protocol message it can read.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import asyncpg

from .proxy import free_port, open_server, server_address

__all__ = ["ACTIONS", "Fault", "WireProxy"]

ACTIONS = ("cut_before", "cut_after", "kill_before", "kill_after", "timeout")
TIMEOUT_MS = 50

# A statement trigger body that sleeps past the injected statement timeout, and only then.
SLOW_WHEN_TIMED_OUT = f"""
BEGIN
    IF current_setting('statement_timeout') = '{TIMEOUT_MS}ms' THEN
        PERFORM pg_sleep(1);
    END IF;
    RETURN NULL;
END
"""


@dataclass
class Fault:
    """One armed fault: `action` at the next execution of SQL containing `match` (case-insensitive),
    in a transaction that executed SQL containing `within` before, if given."""

    match: str
    action: str
    within: str | None = None
    fired: bool = False


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    pid: int = 0
    statements: dict[str, str] = field(default_factory=dict)  # prepared statement name -> SQL
    transaction: list[str] = field(default_factory=list)  # SQL executed since the last COMMIT or ROLLBACK
    after: Fault | None = None  # a fault waiting for the server's next answer
    swallow: int = 0  # answers to injected queries still to keep from the client


def _cstring(body: bytes, at: int) -> tuple[str, int]:
    end = body.index(b"\0", at)
    return body[at:end].decode("utf-8", "replace"), end + 1


def _matches(match: str, text: str) -> bool:
    if match in ("commit", "rollback"):
        return text.lstrip().startswith(match)
    return match in text


class WireProxy:
    """Forwards 127.0.0.1:`port` to the server of `dsn` (TCP or Unix socket) and injects armed faults."""

    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        self._admin_dsn = dsn
        self._target = server_address(dsn)
        user = unquote(parts.username or "postgres")
        password = f":{quote(unquote(parts.password))}" if parts.password else ""
        database = parts.path.lstrip("/") or user
        self.port = free_port()
        self.dsn = f"postgresql://{quote(user)}{password}@127.0.0.1:{self.port}/{database}?sslmode=disable"
        self.faults: list[Fault] = []
        self.fired: list[Fault] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-wire-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._lock = threading.Lock()

    def __enter__(self) -> WireProxy:
        self._thread.start()
        self._run(self._listen())
        return self

    def __exit__(self, *exc: object) -> None:
        self._run(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def arm(self, match: str, action: str, *, within: str | None = None) -> Fault:
        """Inject `action` at the next execution of a statement whose SQL contains `match`."""
        if action not in ACTIONS:
            raise ValueError(action)
        fault = Fault(match.lower(), action, None if within is None else within.lower())
        with self._lock:
            self.faults.append(fault)
        return fault

    def disarm(self) -> None:
        """Forget every fault that has not fired."""
        with self._lock:
            self.faults.clear()

    def _run(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            self._abort(link)
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _take(self, link: _Link, sql: str) -> Fault | None:
        text = sql.lower()
        with self._lock:
            for fault in self.faults:
                if _matches(fault.match, text) and (
                    fault.within is None or any(fault.within in done for done in link.transaction)
                ):
                    self.faults.remove(fault)
                    return fault
        return None

    def _abort(self, link: _Link) -> None:
        link.client.transport.abort()
        link.server.transport.abort()
        self._links.discard(link)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await open_server(self._target)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        await asyncio.gather(self._from_client(link, reader), self._from_server(link, up_reader))
        self._abort(link)

    async def _from_client(self, link: _Link, reader: asyncio.StreamReader) -> None:
        try:
            head = await reader.readexactly(4)  # the startup message has no type byte
            link.server.write(head + await reader.readexactly(int.from_bytes(head, "big") - 4))
            while True:
                kind = await reader.readexactly(1)
                head = await reader.readexactly(4)
                body = await reader.readexactly(int.from_bytes(head, "big") - 4)
                sql = self._executed_sql(link, kind, body)
                fault = None
                if sql is not None:
                    fault = self._take(link, sql)
                    link.transaction.append(sql.lower())
                    if sql.lstrip().upper().startswith(("COMMIT", "ROLLBACK")):
                        link.transaction.clear()
                if fault is not None:
                    fault.fired = True
                    self.fired.append(fault)
                    if fault.action == "cut_before":
                        self._abort(link)
                        return
                    if fault.action == "kill_before":
                        await self._terminate(link.pid)
                    elif fault.action == "timeout":
                        link.swallow += 1
                        query = f"SET LOCAL statement_timeout = {TIMEOUT_MS}\0".encode()
                        link.server.write(b"Q" + (len(query) + 4).to_bytes(4, "big") + query)
                    else:
                        link.after = fault
                link.server.write(kind + head + body)
                await link.server.drain()
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                link.server.close()

    async def _from_server(self, link: _Link, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                kind = await reader.readexactly(1)
                head = await reader.readexactly(4)
                body = await reader.readexactly(int.from_bytes(head, "big") - 4)
                if kind == b"K":  # BackendKeyData: the server process's id
                    link.pid = int.from_bytes(body[:4], "big")
                if link.swallow:
                    if kind == b"Z":  # ReadyForQuery: the end of an injected query's answer
                        link.swallow -= 1
                    continue
                fault = link.after
                if fault is not None and kind != b"1" and kind != b"2":  # an answer, not Parse/BindComplete
                    if fault.action == "kill_after":
                        await self._terminate(link.pid)
                    self._abort(link)
                    return
                link.client.write(kind + head + body)
                await link.client.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                link.client.close()

    @staticmethod
    def _executed_sql(link: _Link, kind: bytes, body: bytes) -> str | None:
        """The SQL that this message executes (a simple query, or the statement a Bind binds)."""
        if kind == b"Q":
            return _cstring(body, 0)[0]
        if kind == b"P":
            name, at = _cstring(body, 0)
            link.statements[name] = _cstring(body, at)[0]
        elif kind == b"B":
            statement = _cstring(body, _cstring(body, 0)[1])[0]
            return link.statements.get(statement, "")
        return None

    async def _terminate(self, pid: int) -> None:
        conn = await asyncpg.connect(self._admin_dsn)
        try:
            await conn.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
        finally:
            await conn.close()
