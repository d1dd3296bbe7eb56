"""`UsageStats`: the recording API and the one owner of tasks and lifecycle."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from enum import Enum
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from .anonymise import AddressCutter, KeyEncoder
from .bounds import BIGINT_MAX, BIGINT_MIN, check_count
from .config import UsageConfig
from .counters import Counters, Pending
from .db import maintenance
from .db.flush import cap_period_keys, write_pending
from .db.isolate import write_isolating
from .db.store import Store
from .delivery import Attempt, Batch, Delivery
from .embedded import EmbeddedServer, start_embedded
from .errors import ConfigError, StoreUnavailableError, UsageStatsError
from .periods import Calendar, utc
from .readiness import Readiness
from .sanitise import clean_name
from .tables.model import Mark, UsageTable
from .tables.read import Reader

if TYPE_CHECKING:
    from starlette.types import ASGIApp

__all__ = ["BeforeFlush", "Clock", "UsageStats"]

logger = logging.getLogger(__name__)

# How long start() waits for the first connection before it returns and goes on counting in memory
# (a database that refuses connections answers at once; one that hangs would delay the app's startup).
START_WAIT = 5.0


class Clock(Protocol):
    """Returns the current time as an aware datetime."""

    def __call__(self) -> datetime: ...


class BeforeFlush(Protocol):
    """Called with the `UsageStats` before every flush; may be sync or async."""

    def __call__(self, stats: UsageStats, /) -> Awaitable[None] | None: ...


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
        self._clock = clock
        self._now: Callable[[], float] = time.time if clock is None else (lambda: clock().timestamp())
        self.calendar = Calendar(self.config.zone, self.config.base_period)
        self._before_flush = before_flush
        self._cut = AddressCutter(self.config.ip_prefix_v4, self.config.ip_prefix_v6)
        self._counters = Counters(
            self.calendar, self._now, max_keys_per_period=self.config.max_keys_per_period, on_pressure=self._wake
        )
        self._admitted: dict[int, set[tuple[str, str]]] = {}  # count keys flushed per base period
        self._encode_key = KeyEncoder(self.config.user_ids)
        self._salts: dict[date, bytes] | None = {} if self.config.user_ids == "hashed" else None
        self._delivery = Delivery()
        self._level = 2 if self.config.base_period == timedelta(days=1) else 1
        self._state = _State.UNOPENED
        self._store: Store | None = None
        self._embedded: EmbeddedServer | None = None
        self._background: asyncio.Task[None] | None = None
        self._flush_lock = anyio.Lock()
        self._flush_wanted = anyio.Event()
        self._started_at: datetime | None = None
        self._readiness = Readiness(self._prepare)
        self._first_attempt = anyio.Event()
        self._start_returned = anyio.Event()  # maintenance begins after start() (as it did when it connected there)
        self._discarded = 0  # counts and keys thrown away because the database refused the configuration

    def __repr__(self) -> str:
        return f"<UsageStats {self._state.value} schema={self.config.schema!r}>"

    # -- recording (synchronous, no I/O) ---------------------------------------------------------

    def count(self, event: str, category: str) -> None:
        """Count one occurrence of `event` in `category`, in the current base period."""
        self._counters.add(category, event, 1)

    def add(self, event: str, category: str, n: int) -> None:
        """Add `n` occurrences of `event` in `category` (zero is ignored).

        `n` must be an integer (not a bool) in the signed 64-bit range: anything else raises
        `TypeError` or `ValueError` here, at the call, rather than failing a flush later.
        """
        if type(n) is not int or not BIGINT_MIN <= n <= BIGINT_MAX:  # the common case costs no call
            n = check_count(n)
        if n:
            self._counters.add(category, event, n)

    def seen_user(self, user_id: object, category: str = "user") -> None:
        """Count a signed-in user once per day (the ID is pseudonymised before it is stored)."""
        if user_id is not None and user_id != "":
            self._counters.seen("u", category, str(user_id))

    def seen_visitor(self, ip: str, category: str = "visitor") -> None:
        """Count a visitor once per day by client address, cut to its network prefix first.

        An address that cannot be parsed counts as no visitor.
        """
        network = self._cut(ip)
        if network is not None:
            self._counters.seen("v", category, network)

    @property
    def pending(self) -> Pending:
        """What is recorded but not flushed yet (read-only use)."""
        return self._counters.peek()

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
            self._counters.bind_to_current_thread()
            # Background work runs in a task of its own (not in the caller's), so that start() and
            # stop() may be awaited from different tasks, as wait_for() and some servers do.
            self._background = asyncio.get_running_loop().create_task(self._run_background(), name="usage_stats")
            with anyio.move_on_after(START_WAIT):
                await self._first_attempt.wait()
            if self._readiness.refused is not None:
                raise self._readiness.refused
            self._start_returned.set()
        except BaseException:
            self._state = _State.CLOSED
            with anyio.CancelScope(shield=True):
                if self._background is not None:
                    self._background.cancel()
                    await asyncio.wait([self._background])
                    self._background = None
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
        if self._background is not None:
            # A flush in progress may finish (within the timeout) rather than be cancelled mid-commit,
            # after which nobody could tell whether its counts were saved: saving them again could double them.
            locked = False
            with anyio.CancelScope(shield=True), anyio.move_on_after(timeout):
                await self._flush_lock.acquire()
                locked = True
            self._background.cancel()
            if locked:
                self._flush_lock.release()
            with anyio.CancelScope(shield=True):
                await asyncio.wait([self._background])  # awaits the cancelled task without raising
            self._background = None
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
            in_doubt = self._delivery.in_doubt
            if in_doubt is not None:
                logger.error(
                    "usage_stats: shutting down with a flush of %d counts and %d distinct keys whose COMMIT got "
                    "no answer: the database may or may not have stored it",
                    in_doubt.pending.total_counts,
                    in_doubt.pending.total_keys,
                )
            if self._discarded:
                logger.error(
                    "usage_stats: %d counts and distinct keys were discarded because the configuration "
                    "does not match the database",
                    self._discarded,
                )
            lost = self._counters.peek()
            if lost:
                logger.error(
                    "usage_stats: shutting down with %d counts and %d distinct keys not saved",
                    lost.total_counts,
                    lost.total_keys,
                )
            assert self._store is not None
            # Closing is part of the bounded shutdown: connections stuck on a hung server are terminated.
            await self._store.close(grace=max(deadline - anyio.current_time(), 0.5))
            await self._release_embedded()

    async def _release_embedded(self) -> None:
        # Here, not at interpreter exit: a server killed by a signal (uvicorn re-raises SIGTERM) runs no atexit.
        if self._embedded is not None:
            embedded, self._embedded = self._embedded, None
            await embedded.release()

    async def _run_background(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._flush_loop, name="usage_stats flush")
            tg.start_soon(self._maintain_loop, name="usage_stats maintenance")

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
        async with self._flush_lock:
            await self._call_before_flush()
            try:
                await self._ready_store()
            except ConfigError:
                taken = self._counters.take()  # never to be stored: do not let memory grow
                self._discarded += taken.total_counts + taken.total_keys
                raise
            await self._delivery.settle(self._write)  # a batch in doubt goes first, under its own id
            taken = self._counters.take()
            if not taken:
                return
            cap_period_keys(taken, self._admitted, self.config.max_keys_per_period)
            await self._delivery.send(taken, self._write, self._counters.restore)

    async def _write(self, batch: Batch, attempt: Attempt) -> None:
        store = self._store
        assert store is not None
        async with store.connection() as conn:
            # A value the database refuses is dropped (and logged) rather than failing every flush.
            result = await write_isolating(
                lambda guard: write_pending(
                    conn,
                    self.config.schema,
                    level=self._level,
                    pending=batch.pending,
                    encode=self._encode_key,
                    salts=self._salts,
                    flush=batch.id,
                    at=utc(self._now()),
                    attempt=attempt,
                    guard=guard,
                )
            )
        logger.debug("usage_stats: flushed %d count rows and %d keys", result.count_rows, result.keys)

    async def _call_before_flush(self) -> None:
        if self._before_flush is None:
            return
        try:
            outcome = self._before_flush(self)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            logger.exception("usage_stats: before_flush raised; flushing anyway")

    def _wake(self) -> None:
        self._flush_wanted.set()

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

    async def _flush_loop(self) -> None:
        interval = self.config.flush_interval.total_seconds()
        delay, failures = 0.0, 0  # the first attempt at once, and only preparing the schema
        while True:
            with anyio.move_on_after(delay):
                await self._flush_wanted.wait()
            self._flush_wanted = anyio.Event()
            started = anyio.current_time()
            try:
                if self._first_attempt.is_set():
                    await self._flush_now()
                else:
                    await self._ready_store()
            except ConfigError:
                delay = interval  # logged when found; what is recorded is discarded at each interval
                continue
            except Exception as exc:
                failures += 1
                delay = min(interval * 2**failures, max(interval, 30.0))
                if failures == 1:  # said once per outage, not once per attempt
                    what = "flush failed" if self._readiness.ready.is_set() else "database not ready at start"
                    if isinstance(exc, StoreUnavailableError):
                        logger.error("usage_stats: %s, counts kept in memory, retrying: %s", what, exc)
                    else:
                        logger.exception("usage_stats: %s unexpectedly; counts kept in memory, retrying", what)
                continue
            finally:
                self._first_attempt.set()
            if failures:
                logger.warning("usage_stats: flush succeeded again after %d failed attempts", failures)
            took = anyio.current_time() - started
            if took > max(interval, 5.0):  # a database that hangs rather than refuses is said once, too
                logger.warning("usage_stats: a flush took %.1f s; is the database slow or unreachable?", took)
            delay, failures = interval, 0

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
        await self._flush_keys_through(plan.last_ended)
        return await store.maintain(self.calendar, plan, first_day=first_day)

    async def _flush_keys_through(self, last_ended: date) -> None:
        """Save this process's own distinct keys of days about to be closed, so that maintenance
        never drops keys that were recorded in time (after a clock jump or an outage at midnight)."""
        async with self._flush_lock:
            pass  # a flush in progress finishes first
        self._counters.drain()
        if self._delivery.in_doubt is not None or any(
            day <= last_ended and any(seen.values()) for day, seen in self._counters.peek().seen.items()
        ):
            await self._flush_now()

    async def _maintain_loop(self) -> None:
        grace = self.grace.total_seconds()
        await self._start_returned.wait()
        await self._readiness.ready.wait()  # prepared by the flush loop, which retries and logs
        while True:
            try:
                await self._maintain()
            except StoreUnavailableError as exc:
                logger.warning("usage_stats: maintenance postponed: %s", exc)
            except Exception:
                logger.exception("usage_stats: maintenance failed")
            now = self._now()
            _, day_end, _ = self.calendar.day_bounds(now - grace)
            await anyio.sleep(min(max(day_end + grace - now, 1.0), 600.0))

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

    def dashboard(self, *, auth: Callable[..., Any] | None = None) -> ASGIApp:
        """A Starlette app to mount (for example at `/usage`) showing the tables; see the README."""
        from .dashboard import create_dashboard

        return create_dashboard(self, auth=auth)
