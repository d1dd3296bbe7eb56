"""`UsageStats`: the public facade. It owns the lifecycle (start, stop, the store) and hands each job to
its owner: recording to `Recorder`, saving to `db.flusher.Flusher`, background loops to `Scheduler`."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from enum import Enum
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

from .config import UsageConfig
from .counters import Pending
from .db import maintenance
from .db.flusher import Flusher
from .db.store import Store
from .embedded import EmbeddedServer, start_embedded
from .errors import ConfigError, StoreUnavailableError, UsageStatsError
from .hooks import BeforeFlush, Clock, DashboardAuth
from .periods import Calendar, utc
from .readiness import Readiness
from .recorder import Recorder
from .sanitise import clean_name
from .scheduler import Scheduler
from .tables.model import Mark, UsageTable
from .tables.read import Reader

if TYPE_CHECKING:
    from starlette.types import ASGIApp

__all__ = ["BeforeFlush", "Clock", "UsageStats"]

logger = logging.getLogger(__name__)

# How long start() waits for the first connection before it returns and goes on counting in memory
# (a database that refuses connections answers at once; one that hangs would delay the app's startup).
START_WAIT = 5.0


class _State(Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class UsageStats:
    """Privacy-preserving usage statistics for one service, kept in PostgreSQL.

    ::

        stats = UsageStats(UsageConfig.from_env())
        app = Starlette(routes=routes, lifespan=stats.lifespan)
        app.add_middleware(UsageMiddleware, stats=stats)

    Recording (`count`, `add`, `seen_user`, `seen_visitor`) is synchronous and cheap; counts stay in
    memory until the next flush (every `flush_interval`, on `flush()`, and at shutdown).
    """

    def __init__(
        self,
        config: UsageConfig | None = None,
        *,
        clock: Clock | None = None,
        before_flush: BeforeFlush | None = None,
    ) -> None:
        self.config = config if config is not None else UsageConfig()
        self._now: Callable[[], float] = time.time if clock is None else (lambda: clock().timestamp())
        self.calendar = Calendar(self.config.zone, self.config.base_period)
        self._before_flush = before_flush
        self._recorder = Recorder(self.config, self.calendar, self._now, on_pressure=self._wake)
        self._state = _State.UNOPENED
        self._store: Store | None = None
        self._embedded: EmbeddedServer | None = None
        self._started_at: datetime | None = None
        self._readiness = Readiness(self._prepare)
        self._flusher = Flusher(self.config, self._recorder, ready=self._ready_store, before=self._call_before_flush)
        self._scheduler = Scheduler(
            flush=self._flusher.flush,
            prepare=self._ready_store,
            maintain=self._maintain,
            readiness=self._readiness,
            calendar=self.calendar,
            now=self._now,
            flush_interval=self.config.flush_interval,
            grace=self.grace,
        )

    def __repr__(self) -> str:
        return f"<UsageStats {self._state.value} schema={self.config.schema!r}>"

    # -- recording (synchronous, no I/O) ---------------------------------------------------------

    def count(self, event: str, category: str) -> None:
        """Count one occurrence of `event` in `category`, in the current base period."""
        self._recorder.count(event, category)

    def add(self, event: str, category: str, n: int) -> None:
        """Add `n` occurrences of `event` in `category` (zero is ignored).

        `n` must be an integer (not a bool) in the signed 64-bit range: anything else raises
        `TypeError` or `ValueError` here, at the call, rather than failing a flush later.
        """
        self._recorder.add(event, category, n)

    def seen_user(self, user_id: object, category: str = "user") -> None:
        """Count a signed-in user once per day (the ID is pseudonymised before it is stored)."""
        self._recorder.seen_user(user_id, category)

    def seen_visitor(self, ip: str, category: str = "visitor") -> None:
        """Count a visitor once per day by client address, cut to its network prefix first.

        An address that cannot be parsed counts as no visitor.
        """
        self._recorder.seen_visitor(ip, category)

    @property
    def pending(self) -> Pending:
        """What is recorded but not flushed yet (read-only use)."""
        return self._recorder.pending

    @property
    def recorder(self) -> Recorder:
        """The in-memory recorder behind the recording methods (what `UsageMiddleware` writes to)."""
        return self._recorder

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the pool, create or migrate the schema, record `go-live` once ever, start the
        periodic flush and daily maintenance. A stopped instance cannot be started again.

        An unreachable database does not make it fail: recording works at once, and the schema is
        prepared in the background as soon as the database answers (retried like a flush). Only a
        wrong setting raises `ConfigError` (found when the database answers within `START_WAIT`), for
        example `timezone`, `base_period` or `user_ids` disagreeing with the values recorded in the
        schema (the first process on a schema records its own).
        """
        if self._state is not _State.UNOPENED:
            raise UsageStatsError(f"UsageStats is {self._state.value}; create a new instance to start again")
        self._state = _State.OPEN
        try:
            dsn = self.config.dsn
            if dsn is None:
                dsn, self._embedded = await start_embedded()
            self._store = await Store.create(
                dsn, self.config.schema, statement_cache_size=self.config.statement_cache_size
            )
            self._started_at = utc(self._now())  # `go-live` is when counting began, whenever it is saved
            self._recorder.bind_to_current_thread()
            self._scheduler.start()
            await self._scheduler.first_attempt(START_WAIT)
            if self._readiness.refused is not None:
                raise self._readiness.refused
            self._scheduler.started()
        except BaseException:
            self._state = _State.CLOSED
            with anyio.CancelScope(shield=True):
                await self._scheduler.stop()
                if self._store is not None:
                    await self._store.close()
                await self._release_embedded()
            raise

    async def stop(self) -> None:
        """Stop the background tasks and save what is pending, within `shutdown_timeout`.

        Counts that cannot be saved in time are reported in the log. Stopping twice is harmless.
        """
        if self._state is not _State.OPEN:
            self._state = _State.CLOSED
            return
        self._state = _State.CLOSED
        timeout = self.config.shutdown_timeout.total_seconds()
        deadline = anyio.current_time() + timeout
        await self._scheduler.stop(self._flusher.lock, timeout)
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(max(deadline - anyio.current_time(), 0.0)) as scope:
                try:
                    await self._flush_now()
                except ConfigError:
                    pass  # said when it was found; what was recorded is counted below
                except StoreUnavailableError as exc:
                    logger.error("usage_stats: final flush failed: %s", exc)
                except Exception:
                    logger.exception("usage_stats: final flush failed")
            if scope.cancelled_caught:
                logger.error("usage_stats: final flush did not finish within %.1f s", timeout)
            self._flusher.log_unsaved()
            assert self._store is not None
            # Closing is part of the bounded shutdown: connections stuck on a hung server are terminated.
            await self._store.close(grace=max(deadline - anyio.current_time(), 0.5))
            await self._release_embedded()

    async def _release_embedded(self) -> None:
        # Here, not at interpreter exit: a server killed by a signal (uvicorn re-raises SIGTERM) runs no atexit.
        if self._embedded is not None:
            embedded, self._embedded = self._embedded, None
            await embedded.release()

    async def __aenter__(self) -> UsageStats:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def lifespan(self) -> Callable[[Any], Any]:
        """A lifespan for `Starlette(lifespan=...)`, `FastAPI(lifespan=...)` or `Litestar(lifespan=[...])` that
        runs `async with self`."""

        @asynccontextmanager
        async def lifespan(app: ASGIApp) -> AsyncIterator[None]:
            async with self:
                yield

        return lifespan

    # -- saving ------------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Save pending counts now.

        If the database cannot be reached (also when it has not answered since start) the counts are
        kept for the next flush and `StoreUnavailableError` is raised.
        """
        self._require_open()
        await self._flush_now()

    async def _flush_now(self) -> None:
        await self._flusher.flush()

    def _call_before_flush(self) -> Awaitable[None] | None:
        return None if self._before_flush is None else self._before_flush(self)

    def _wake(self) -> None:
        self._scheduler.wake()

    async def _ready_store(self) -> Store:
        """The store, once prepared (here if need be): see `Readiness.ensure`."""
        await self._readiness.ensure()
        assert self._store is not None
        return self._store

    async def _prepare(self) -> date:
        assert self._store is not None
        assert self._started_at is not None
        at = await self._store.prepare(self.config, self._started_at)
        return self.calendar.day_of(at.timestamp())

    # -- maintenance -------------------------------------------------------------------------------

    @property
    def grace(self) -> timedelta:
        """How long after a day ends its maintenance waits for every worker's last flush."""
        return maintenance.grace(self.config)

    async def maintain(self) -> list[date]:
        """Run roll-ups and retention for every day that has ended (by the clock), catching up
        after downtime; returns the days processed. Idempotent, and safe from several processes."""
        self._require_open()
        return await self._maintain()

    async def _maintain(self) -> list[date]:
        first_day = await self._readiness.ensure()  # the go-live day
        store = self._store
        assert store is not None
        plan = maintenance.plan(self.config, self.calendar, self._now())
        await self._flusher.flush_keys_through(plan.last_ended)
        return await store.maintain(self.calendar, plan, first_day=first_day)

    # -- marks and tables ----------------------------------------------------------------------------

    async def mark(self, name: str, category: str = "timeline") -> None:
        """Record a named point in time (a deploy, a campaign...) at the clock's now.

        Marks are not queued: while the database is unreachable this raises `StoreUnavailableError`.
        """
        self._require_open()
        store = await self._ready_store()
        await store.add_mark(clean_name(name), clean_name(category), utc(self._now()))

    async def marks(self) -> list[Mark]:
        """Every mark, oldest first, with `at` in the configured time zone."""
        self._require_open()
        store = await self._ready_store()
        return await Reader(store, self.config).marks()

    async def table(
        self,
        period: str = "day",
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        minimum: float = 0,
        categories: Sequence[str] | None = None,
    ) -> UsageTable:
        """The aggregated table of every `period` ("day", "month" or "base") whose start is in
        [start, end), current incomplete periods included; rolled-up and recent rows merged."""
        if isinstance(categories, str):
            categories = [categories]
        self._require_open()
        store = await self._ready_store()
        return await Reader(store, self.config).table(
            period, now=self.now, start=start, end=end, minimum=minimum, categories=categories
        )

    # -- helpers -------------------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._state is not _State.OPEN or self._store is None:
            raise UsageStatsError(f"UsageStats is {self._state.value}; use it inside `async with stats:`")

    @property
    def now(self) -> datetime:
        """The clock's current time, in the configured time zone."""
        return self.calendar.local(self._now())

    def dashboard(self, *, auth: DashboardAuth | None = None) -> ASGIApp:
        """A Starlette app to mount (for example at `/usage`) showing the tables; see docs/dashboard.md."""
        from .dashboard import create_dashboard

        return create_dashboard(self, auth=auth)
