"""The connection pool, and the one place where driver errors become `StoreUnavailableError`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import anyio
import asyncpg

from ..config import UsageConfig, redact_dsn
from ..errors import ConfigError, StoreUnavailableError
from .migrations import migrate
from .query import go_live
from .settings import check_settings

__all__ = ["DRIVER_ERRORS", "Store", "check_database"]

logger = logging.getLogger(__name__)

DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


class Store:
    """A pool of connections to one PostgreSQL database, with every table in `schema`.

    Creating it does no I/O: connections are made on demand, so a store exists (and can be closed)
    while the database is unreachable.
    """

    def __init__(self, pool: asyncpg.Pool, schema: str, dsn: str) -> None:
        self.pool = pool
        self.schema = schema
        self._dsn = dsn

    @classmethod
    async def create(cls, dsn: str, schema: str, *, statement_cache_size: int = 100, max_size: int = 4) -> Store:
        """A store whose connections are opened when first needed (no connection is made here)."""
        pool = await asyncpg.create_pool(
            dsn,
            # No connection floor: while the database is down asyncpg would otherwise retry it in
            # the background and log a traceback each time, besides our own single log line.
            min_size=0,
            max_size=max_size,
            timeout=10,
            command_timeout=120,
            # 0 behind a transaction-pooling proxy (pgbouncer), where a named prepared statement
            # made on one server connection is missing, or already present, on the next.
            statement_cache_size=statement_cache_size,
            server_settings={"application_name": "usage_stats"},
        )
        return cls(pool, schema, dsn)

    async def prepare(self, config: UsageConfig, started_at: datetime) -> datetime:
        """Check the database, create or migrate the schema (only reads when it is current), check
        or record the settings, and record `go-live` at `started_at` unless it exists; returns the
        `go-live` time. Raises `StoreUnavailableError` on failure, `ConfigError` for a database that
        cannot hold the statistics or whose recorded settings `config` contradicts."""
        async with self.connection() as conn:
            async with conn.transaction():  # one server connection behind a transaction pooler
                await check_database(conn)
            await migrate(conn, self.schema)
            async with conn.transaction():
                await check_settings(conn, self.schema, config)
            return await go_live(conn, self.schema, started_at)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; driver errors are raised as `StoreUnavailableError`, and a DSN that
        cannot be parsed as `ConfigError`."""
        acquired = False
        try:
            async with self.pool.acquire(timeout=10) as conn:
                acquired = True
                yield conn  # type: ignore[misc]
        except DRIVER_ERRORS as exc:
            where = "" if acquired else f"cannot connect to {redact_dsn(self._dsn)}: "
            raise StoreUnavailableError(f"{where}{type(exc).__name__}: {exc}") from exc
        except ValueError as exc:
            if acquired:
                raise
            raise ConfigError(f"dsn: {redact_dsn(self._dsn)} is not a valid PostgreSQL DSN: {exc}") from exc

    async def close(self, grace: float = 5.0) -> None:
        """Close the pool, terminating connections that do not close within `grace` seconds."""
        try:
            with anyio.move_on_after(grace) as scope:
                await self.pool.close()
        except BaseException:
            self.pool.terminate()
            raise
        if scope.cancelled_caught:
            logger.warning("usage_stats: connections did not close within %.1f s; terminated them", grace)
            self.pool.terminate()


async def check_database(conn: asyncpg.Connection) -> None:
    """Refuse, with a `ConfigError`, a database that cannot store every name and ID as recorded.

    Only a UTF8 database can: in any other encoding (LATIN1, SQL_ASCII...) one name such as "✓"
    would make every flush that carries it fail, or be stored as bytes that no longer compare equal.
    Call it on a reachable database before anything is written (start-up, `usage-stats migrate`).
    """
    encoding = await conn.fetchval("SELECT current_setting('server_encoding')")
    if encoding != "UTF8":
        name = await conn.fetchval("SELECT current_database()")
        raise ConfigError(
            f"dsn: database {name!r} has encoding {encoding}; usage_stats needs a UTF8 database "
            "(CREATE DATABASE ... ENCODING 'UTF8')"
        )
