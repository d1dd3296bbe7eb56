"""Reading tables and marks: `Reader` on a `Store` (what `UsageStats.table()` and `marks()` use), and
`UsageReader`, which reads without starting `UsageStats`: no go-live mark, no flush, no migration."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType

from ..config import UsageConfig
from ..db.levels import Level
from ..db.settings import adopt_settings
from ..db.store import Store
from ..embedded import start_embedded
from ..errors import UsageStatsError
from ..periods import PERIODS, Calendar, PeriodName, period_name
from .build import build_table
from .model import Mark, UsageTable

__all__ = ["PERIODS", "Reader", "UsageReader"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FOREVER = datetime(9999, 12, 1, tzinfo=UTC)
# Per table: the levels stored at its granularity, and the finer levels summed into it.
_LEVELS: dict[PeriodName, tuple[list[Level], list[Level]]] = {
    "day": ([Level.DAY], [Level.BASE]),
    "month": ([Level.MONTH, Level.MONTH_TOTAL], [Level.BASE, Level.DAY]),
}


@dataclass(frozen=True, slots=True)
class Reader:
    """Reads what `UsageStats.table()` and `marks()` return, through a `Store`."""

    store: Store
    config: UsageConfig

    @property
    def calendar(self) -> Calendar:
        return Calendar(self.config.zone, self.config.base_period)

    async def marks(self) -> list[Mark]:
        """Every mark, oldest first, with `at` in the configured time zone."""
        zone = self.config.zone
        return [Mark(m.name, m.category, m.at.astimezone(zone)) for m in await self.store.marks()]

    async def table(
        self,
        period: str = "day",
        *,
        now: datetime,
        start: datetime | None = None,
        end: datetime | None = None,
        minimum: float = 0,
        categories: Sequence[str] | None = None,
    ) -> UsageTable:
        """The table `UsageStats.table()` would return at `now` (which decides today, for averages)."""
        if isinstance(categories, str):
            categories = [categories]
        name = period_name(period)
        for label, value in (("start", start), ("end", end)):
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{label} must be an aware datetime")
        cal = self.calendar
        lo = cal.period_ceil(name, start) if start is not None else _EPOCH
        hi = cal.period_ceil(name, end) if end is not None else _FOREVER
        base_level = Level.DAY if self.config.base_period.total_seconds() == 86400 else Level.BASE
        levels, finer = _LEVELS.get(name, ([base_level], []))
        rows = await self.store.snapshot(
            cal, name, levels=levels, finer_levels=finer, lo=lo, hi=hi, categories=categories
        )
        return build_table(
            name,
            cal,
            rows.counts,
            rows.stored_distinct,
            rows.live_keys,
            go_live=cal.day_of(rows.go_live.timestamp()) if rows.go_live is not None else None,
            today=cal.day_of(now.timestamp()),
            minimum=minimum,
            categories=categories,
        )


class UsageReader:
    """Reads the tables and marks that services keep, without starting `UsageStats` (a report job,
    a notebook): it opens one read-only connection and never writes.

    ::

        async with UsageReader(UsageConfig.from_env()) as reader:
            table = await reader.table("month")
            print(table.to_csv())

    `timezone`, `base_period` and `user_ids` are taken from the schema where they are recorded (the
    same values every service on it uses). Without a `dsn`, the embedded server is started.
    """

    def __init__(self, config: UsageConfig | None = None) -> None:
        self.config = config if config is not None else UsageConfig()
        self._stack: AsyncExitStack | None = None
        self._reader: Reader | None = None

    async def __aenter__(self) -> UsageReader:
        if self._stack is not None:
            raise UsageStatsError("UsageReader is open already")
        async with AsyncExitStack() as stack:
            store = await stack.enter_async_context(self._store())
            if await store.schema_version() is None:
                raise UsageStatsError(f"schema {self.config.schema!r} holds no usage statistics in this database")
            self.config = adopt_settings(self.config, await store.settings(), frozenset())
            self._reader = Reader(store, self.config)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack, self._reader = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    @asynccontextmanager
    async def _store(self) -> AsyncIterator[Store]:
        dsn, embedded = self.config.dsn, None
        if dsn is None:
            dsn, embedded = await start_embedded()
        try:
            async with Store.connect(
                dsn, self.config.schema, read_only=True, statement_cache_size=self.config.statement_cache_size
            ) as store:
                yield store
        finally:
            if embedded is not None:
                await embedded.release()

    def _open(self) -> Reader:
        if self._reader is None:
            raise UsageStatsError("UsageReader is not open; use it inside `async with UsageReader(config) as reader:`")
        return self._reader

    async def marks(self) -> list[Mark]:
        """Every mark, oldest first, with `at` in the configured time zone."""
        return await self._open().marks()

    async def table(
        self,
        period: str = "day",
        *,
        now: datetime | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        minimum: float = 0,
        categories: Sequence[str] | None = None,
    ) -> UsageTable:
        """The table `UsageStats.table()` returns (same arguments); `now` (default: the real time)
        decides which day is today, left out of monthly averages."""
        moment = now if now is not None else datetime.now(UTC)
        return await self._open().table(
            period, now=moment, start=start, end=end, minimum=minimum, categories=categories
        )
