"""Issue 4.8: event, category and mark names full of quotes, semicolons and SQL are stored verbatim
and are harmless (every query is parameterised; the schema name is validated)."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from tests.conftest import FakeClock, StatsFactory
from usage_stats import ConfigError, UsageConfig

NAMES = [
    "'; DROP TABLE counts; --",
    'Robert"); DROP SCHEMA public CASCADE; --',
    "a' OR '1'='1",
    "); DELETE FROM marks; SELECT (",
    "$1 $2 %s %(name)s {s} {schema}",
    "E'\\\\x00' \\ \\\\ '' \"\"",
    "/* */ -- ;;; $$ $tag$ body $tag$",
    "ümlaut ☃ 😀 \U0001d518\U0001d52b\u202e",  # astral characters, a right-to-left override
]
TABLES = {
    "counts",
    "distinct_counts",
    "seen_keys",
    "salts",
    "marks",
    "state",
    "settings",
    "schema_version",
    "flush_ledger",
    "calendar",
    "day_sums",
    "day_sums_months",
    "day_table",  # views are listed too
    "month_table",
}


async def test_sql_in_names_is_stored_verbatim_and_harmless(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection, schema: str
) -> None:
    async with make_stats(user_ids="database") as stats:
        for name in NAMES:
            stats.count(name, name)
            stats.add(name, "page", 2)
            stats.seen_user(name, category=name)
            await stats.mark(name, name)
        await stats.flush()
        table = await stats.table("day")
        marks = await stats.marks()
        clock.set(clock.now.replace(hour=0) + timedelta(days=1) + stats.grace)
        await stats.maintain()

    stored = {(r[0], r[1]): r[2] for r in await db.fetch(f'SELECT category, event, value FROM "{schema}".counts')}
    assert stored == {**{(n, n): 1 for n in NAMES}, **{("page", n): 2 for n in NAMES}}
    rows = {(row.category, row.event, row.kind): row.value for row in table.periods[0].rows}
    for name in NAMES:
        assert rows[(name, name, "count")] == 1
        assert rows[("page", name, "count")] == 2
        assert rows[("seen", name, "distinct")] == 1
    assert [(m.name, m.category) for m in marks][1:] == [(n, n) for n in NAMES]  # after go-live
    distinct = {r[0]: r[1] for r in await db.fetch(f'SELECT category, value FROM "{schema}".distinct_counts')}
    assert distinct == dict.fromkeys(NAMES, 1)
    tables = await db.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema)
    assert {r[0] for r in tables} == TABLES
    assert await db.fetchval("SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'public'") == 1


@pytest.mark.parametrize("name", ['usage"; DROP SCHEMA public; --', "usage; DROP", "a b", "", "1abc"])
def test_a_schema_name_with_sql_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="schema"):
        UsageConfig(schema=name)
