"""Reading tables and marks without starting `UsageStats`: no go-live mark, no flush, no migration.

The CLI's `report` uses it on a read-only connection, so it can never change what is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .config import UsageConfig
from .db import query
from .periods import Calendar
from .report import build_table
from .table import Mark, UsageTable

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PERIODS", "Reader"]

PERIODS = ("day", "month", "base")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FOREVER = datetime(9999, 12, 1, tzinfo=UTC)
# Per table: the levels stored at its granularity, and the finer levels summed into it.
_LEVELS = {"day": ([2], [1]), "month": ([3, 4], [1, 2])}


@dataclass(frozen=True, slots=True)
class Reader:
    """Reads what `UsageStats.table()` and `marks()` return, through one open connection."""

    conn: asyncpg.Connection
    config: UsageConfig

    @property
    def calendar(self) -> Calendar:
        return Calendar(self.config.zone, self.config.base_period)

    async def marks(self) -> list[Mark]:
        """Every mark, oldest first, with `at` in the configured time zone."""
        rows = await query.marks(self.conn, self.config.schema)
        zone = self.config.zone
        return [Mark(name, category, at.astimezone(zone)) for name, category, at in rows]

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
        if period not in PERIODS:
            raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
        for name, value in (("start", start), ("end", end)):
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} must be an aware datetime")
        cal = self.calendar
        schema = self.config.schema
        lo = cal.period_ceil(period, start) if start is not None else _EPOCH
        hi = cal.period_ceil(period, end) if end is not None else _FOREVER
        base_level = 2 if self.config.base_period.total_seconds() == 86400 else 1
        levels, finer = _LEVELS.get(period, ([base_level], []))
        # One snapshot for every read: a day closed by maintenance between two of them would
        # otherwise show neither its keys nor its distinct row.
        async with self.conn.transaction(isolation="repeatable_read", readonly=True):
            go_live = next((m.at for m in await self.marks() if m.name == "go-live"), None)
            counts = await query.count_rows(
                self.conn,
                schema,
                period=period,
                calendar=cal,
                levels=levels,
                finer_levels=finer,
                lo=lo,
                hi=hi,
                categories=categories,
            )
            stored, live = await query.distinct_rows(
                self.conn, schema, lo=lo, hi=hi, lo_day=cal.day_of(lo.timestamp()), hi_day=cal.day_of(hi.timestamp())
            )
        return build_table(
            period,
            cal,
            counts,
            stored,
            live,
            go_live=cal.day_of(go_live.timestamp()) if go_live is not None else None,
            today=cal.day_of(now.timestamp()),
            minimum=minimum,
            categories=categories,
        )
