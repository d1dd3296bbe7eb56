"""`Store`: the one boundary to PostgreSQL. Every other module reads and writes through its operations
(flush, maintain, read a table snapshot, marks, migrate, settings), and it is the one place where
driver errors become `StoreUnavailableError`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import UTC, date, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import anyio
import asyncpg

from ..anonymise import KeyEncoder
from ..config import UsageConfig, redact_dsn
from ..delivery import Attempt, Batch
from ..errors import ConfigError, StoreUnavailableError
from ..periods import Calendar, PeriodName
from . import maintenance, query, settings
from .calendar_table import fill_calendar
from .connect import DRIVER_ERRORS, connect
from .flush import FlushResult, write_pending
from .isolate import write_isolating
from .levels import Level
from .migrations import migrate, schema_version
from .rows import MarkRow, Snapshot
from .settings import Settings, check_settings

__all__ = ["DRIVER_ERRORS", "Migrated", "Store", "check_database"]

logger = logging.getLogger(__name__)


class Store:
    """A pool of connections to one PostgreSQL database, with every table in `schema`.

    Creating it does no I/O: connections are made on demand, so a store exists (and can be closed)
    while the database is unreachable.
    """

    def __init__(
        self, pool: asyncpg.Pool | None, schema: str, dsn: str, *, conn: asyncpg.Connection | None = None
    ) -> None:
        self.pool = pool
        self.schema = schema
        self._dsn = dsn
        self._conn = conn

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, dsn: str, schema: str, *, read_only: bool = False, statement_cache_size: int = 100
    ) -> AsyncIterator[Store]:
        """A store on one connection for a short command (the CLI, a `UsageReader`); with `read_only`
        the whole block is one read-only snapshot, so nothing it runs can change what is stored."""
        async with connect(dsn, read_only=read_only, statement_cache_size=statement_cache_size) as conn:
            yield cls(None, schema, dsn, conn=conn)

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
            at = await query.go_live(conn, self.schema, started_at)
            calendar = Calendar(config.zone, config.base_period)
            await fill_calendar(conn, self.schema, calendar, calendar.day_of(started_at.timestamp()))
            return at

    # -- writing -------------------------------------------------------------------------------------

    async def write_flush(
        self,
        batch: Batch,
        attempt: Attempt,
        *,
        level: Level,
        encode: KeyEncoder,
        salts: dict[date, bytes] | None,
        at: datetime,
    ) -> FlushResult:
        """Write `batch` in one transaction, under its id in the ledger (see `flush.write_pending`); a
        value the database refuses is dropped (and logged) rather than failing every flush (see
        `isolate.write_isolating`). `attempt` says how far the write got when it fails."""
        async with self.connection() as conn:
            return await write_isolating(
                lambda guard: write_pending(
                    conn,
                    self.schema,
                    level=level,
                    pending=batch.pending,
                    encode=encode,
                    salts=salts,
                    flush=batch.id,
                    at=at,
                    attempt=attempt,
                    guard=guard,
                )
            )

    async def maintain(self, calendar: Calendar, plan: maintenance.Plan, *, first_day: date) -> list[date]:
        """Close every day up to `plan.last_ended` not closed yet (from `first_day` on a schema never
        maintained); returns the days closed. See `maintenance.plan` for what is due when."""
        async with self.connection() as conn:
            return await maintenance.maintain(
                conn, self.schema, calendar, plan.retention, last_ended=plan.last_ended, first_day=first_day
            )

    async def add_mark(self, name: str, category: str, at: datetime) -> None:
        async with self.connection() as conn:
            await query.add_mark(conn, self.schema, name, category, at)

    async def migrate(self, config: UsageConfig, *, now: datetime | None = None) -> Migrated:
        """Check the database (UTF8), create or migrate the schema and record `config`'s settings
        unless some are recorded (those are returned, not checked against `config`); fill the SQL
        views' calendar around `now` (default: the real time) in the recorded zone."""
        async with self.connection() as conn:
            async with _transaction(conn):
                await check_database(conn)
            applied = await migrate(conn, self.schema)
            recorded = await settings.record_settings(conn, self.schema, config)
            calendar = Calendar(ZoneInfo(recorded.timezone), recorded.base_period)
            moment = now if now is not None else datetime.now(UTC)
            await fill_calendar(conn, self.schema, calendar, calendar.day_of(moment.timestamp()))
            version = await schema_version(conn, self.schema)
        assert version is not None
        return Migrated(applied, version, recorded)

    async def change_settings(self, new: Settings) -> Settings | None:
        """Migrate the schema (one that predates recorded settings gets their table), then record
        `new` on purpose (see `settings.change_settings`); returns the settings it replaced."""
        async with self.connection() as conn:
            await migrate(conn, self.schema)
            return await settings.change_settings(conn, self.schema, new)

    # -- reading -------------------------------------------------------------------------------------

    async def schema_version(self) -> int | None:
        """The schema's migration version, or None when it holds no usage statistics."""
        async with self.connection() as conn:
            return await schema_version(conn, self.schema)

    async def settings(self) -> Settings | None:
        """The settings recorded in the schema, or None."""
        async with self.connection() as conn:
            return await settings.stored_settings(conn, self.schema)

    async def marks(self) -> list[MarkRow]:
        """Every mark, oldest first."""
        async with self.connection() as conn:
            return await query.marks(conn, self.schema)

    async def snapshot(
        self,
        calendar: Calendar,
        period: PeriodName,
        *,
        levels: Sequence[Level],
        finer_levels: Sequence[Level],
        lo: datetime,
        hi: datetime,
        categories: Sequence[str] | None,
    ) -> Snapshot:
        """What a table of `period` over [lo, hi) is made of, read in one repeatable-read, read-only
        transaction: a day closed by maintenance between two reads would otherwise show neither its
        keys nor its distinct row."""
        async with self.connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            await conn.execute(query.READ_SETTINGS)
            marks = await query.marks(conn, self.schema)
            counts = await query.count_rows(
                conn,
                self.schema,
                period=period,
                calendar=calendar,
                levels=levels,
                finer_levels=finer_levels,
                lo=lo,
                hi=hi,
                categories=categories,
            )
            stored, live = await query.distinct_rows(
                conn,
                self.schema,
                lo=lo,
                hi=hi,
                lo_day=calendar.day_of(lo.timestamp()),
                hi_day=calendar.day_of(hi.timestamp()),
            )
        go_live = next((m.at for m in marks if m.name == "go-live"), None)
        return Snapshot(go_live, counts, stored, live)

    # -- connections ---------------------------------------------------------------------------------

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection (or the store's one connection); driver errors are raised as
        `StoreUnavailableError`, and a DSN that cannot be parsed as `ConfigError`."""
        acquired = False
        try:
            async with self._acquire() as conn:
                acquired = True
                yield conn
        except DRIVER_ERRORS as exc:
            where = "" if acquired else f"cannot connect to {redact_dsn(self._dsn)}: "
            raise StoreUnavailableError(f"{where}{type(exc).__name__}: {exc}") from exc
        except ValueError as exc:
            if acquired:
                raise
            raise ConfigError(f"dsn: {redact_dsn(self._dsn)} is not a valid PostgreSQL DSN: {exc}") from exc

    def _acquire(self) -> AbstractAsyncContextManager[Any]:
        if self._conn is not None:
            return nullcontext(self._conn)
        assert self.pool is not None
        return self.pool.acquire(timeout=10)

    async def close(self, grace: float = 5.0) -> None:
        """Close the pool, terminating connections that do not close within `grace` seconds (a store
        on one connection is closed by the block that made it)."""
        if self.pool is None:
            return
        try:
            with anyio.move_on_after(grace) as scope:
                await self.pool.close()
        except BaseException:
            self.pool.terminate()
            raise
        if scope.cancelled_caught:
            logger.warning("usage_stats: connections did not close within %.1f s; terminated them", grace)
            self.pool.terminate()


class Migrated(NamedTuple):
    """What `Store.migrate` did: migrations applied, the schema's version, the recorded settings."""

    applied: int
    version: int
    settings: Settings


def _transaction(conn: asyncpg.Connection) -> AbstractAsyncContextManager[object]:
    """A transaction of its own, unless one is open (behind pgbouncer, statements of one job share one)."""
    return nullcontext() if conn.is_in_transaction() else conn.transaction()


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
