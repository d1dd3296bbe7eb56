"""Storing a flush's rows: its count rows added to the stored counts, its distinct keys stored once.
Every statement sorts its rows, so that concurrent flushes from many processes take their row locks
in the same order (no deadlock).

A small flush (`write_arrays`) sends its rows as parameter arrays, one statement per table. A large
one (`write_copied`) copies them (binary `COPY`) into the temporary tables `flush_counts` and
`flush_keys` and merges them from there: for many rows a `COPY` costs a fraction of what the driver
spends checking arrays element by element, but a temporary table costs a few round trips and
catalog rows, which a small flush would notice.

Merging copied rows (`_merge_counts`, `_merge_keys`) first updates the count rows that are stored already;
what is left is new, and is inserted by a plain `INSERT ... SELECT`, which costs about half of an
`INSERT ... ON CONFLICT` (no speculative insertion per row: measured in benchmarks/flush.py). If
another process stored one of those rows meanwhile, the insert meets a unique violation: it is
undone (a savepoint) and the same rows go in by `ON CONFLICT` instead, which is always right.

Each way also has statements that take a range of rows (`lo < n <= hi`, the rows' numbers from
`flush_rows.py`), always by `ON CONFLICT`, for `isolate.RowGuard` to halve when the database refuses
some row.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

import asyncpg

from .flush_rows import CountRecord, KeyRecord, Numbered
from .isolate import RowGuard
from .saturating import saturating

__all__ = ["write_arrays", "write_copied"]

logger = logging.getLogger(__name__)

# Dropped at the end of the flush's transaction, so a transaction-pooling proxy is no obstacle; named
# in pg_temp everywhere, so that no table on the search path can stand in for them.
_CREATE_TEMP = """
CREATE TEMPORARY TABLE flush_counts (n int, start timestamptz, category text, event text, value bigint)
ON COMMIT DROP;
CREATE TEMPORARY TABLE flush_keys (n int, day date, category text, key bytea) ON COMMIT DROP
"""
_COPY_COUNTS = ("flush_counts", ("n", "start", "category", "event", "value"))
_COPY_KEYS = ("flush_keys", ("n", "day", "category", "key"))

# Added to what is stored, saturating at the bounds of bigint (a stored sum that overflowed would
# fail every flush).
_ADD = "DO UPDATE SET value = least(greatest(c.value::numeric + excluded.value, {lo}), {hi})"

_ARRAY_COUNTS = saturating(f"""
INSERT INTO {{s}}.counts AS c (level, start, category, event, value)
SELECT $1, k.start, k.category, k.event, k.value
FROM unnest($2::timestamptz[], $3::text[], $4::text[], $5::bigint[])
    WITH ORDINALITY AS k(start, category, event, value, n)
WHERE k.n > $6 AND k.n <= $7
ORDER BY k.start, k.category, k.event
ON CONFLICT (level, start, category, event) {_ADD}
""")

_ARRAY_KEYS = """
INSERT INTO {s}.seen_keys AS c (day, category, key)
SELECT k.day, k.category, k.key
FROM unnest($1::date[], $2::text[], $3::bytea[]) WITH ORDINALITY AS k(day, category, key, n)
WHERE k.n > $4 AND k.n <= $5
ORDER BY k.day, k.category, k.key
ON CONFLICT DO NOTHING
"""

_UPSERT_COUNTS = saturating(f"""
INSERT INTO {{s}}.counts AS c (level, start, category, event, value)
SELECT $1, k.start, k.category, k.event, k.value FROM pg_temp.flush_counts AS k
WHERE k.n > $2 AND k.n <= $3
ORDER BY k.start, k.category, k.event
ON CONFLICT (level, start, category, event) {_ADD}
""")

_INSERT_KEYS = """
INSERT INTO {s}.seen_keys AS c (day, category, key)
SELECT k.day, k.category, k.key FROM pg_temp.flush_keys AS k
WHERE k.n > $1 AND k.n <= $2
ORDER BY k.day, k.category, k.key
ON CONFLICT DO NOTHING
"""

# The copied rows stored already are added to, and taken out of the copy.
_UPDATE_STORED = saturating(f"""
WITH added AS (
    INSERT INTO {{s}}.counts AS c (level, start, category, event, value)
    SELECT $1, k.start, k.category, k.event, k.value FROM pg_temp.flush_counts AS k
    WHERE EXISTS (
        SELECT FROM {{s}}.counts AS o
        WHERE o.level = $1 AND o.start = k.start AND o.category = k.category AND o.event = k.event
    )
    ORDER BY k.start, k.category, k.event
    ON CONFLICT (level, start, category, event) {_ADD}
    RETURNING c.start, c.category, c.event
)
DELETE FROM pg_temp.flush_counts AS k USING added AS a
WHERE k.start = a.start AND k.category = a.category AND k.event = a.event
""")

_INSERT_NEW_COUNTS = """
INSERT INTO {s}.counts AS c (level, start, category, event, value)
SELECT $1, k.start, k.category, k.event, k.value FROM pg_temp.flush_counts AS k
ORDER BY k.start, k.category, k.event
"""

# A key twice in one copy (two categories whose names clean alike, a user and a visitor with the same
# ID in the `database` scheme) is rare: it makes the insert fail and the ON CONFLICT way take over,
# rather than every flush paying for DISTINCT.
_INSERT_NEW_KEYS = """
INSERT INTO {s}.seen_keys AS c (day, category, key)
SELECT k.day, k.category, k.key FROM pg_temp.flush_keys AS k
WHERE NOT EXISTS (
    SELECT FROM {s}.seen_keys AS o WHERE o.day = k.day AND o.category = k.category AND o.key = k.key
)
ORDER BY k.day, k.category, k.key
"""


async def _merge_counts(conn: asyncpg.Connection, s: str, level: int, rows: int) -> None:
    """Add the `rows` copied count rows to the stored ones (`s`: the quoted schema)."""
    await conn.execute(_UPDATE_STORED.format(s=s), level)
    try:
        async with conn.transaction():
            await conn.execute(_INSERT_NEW_COUNTS.format(s=s), level)
    except asyncpg.UniqueViolationError:  # another process stored one of them since
        await conn.execute(_UPSERT_COUNTS.format(s=s), level, 0, rows)


async def _merge_keys(conn: asyncpg.Connection, s: str, rows: int) -> None:
    """Store the `rows` copied distinct keys, each once (`s`: the quoted schema)."""
    try:
        async with conn.transaction():
            await conn.execute(_INSERT_NEW_KEYS.format(s=s))
    except asyncpg.UniqueViolationError:  # another process stored one of them since
        await conn.execute(_INSERT_KEYS.format(s=s), 0, rows)


async def _all_rows(conn: asyncpg.Connection, sql: str, head: Sequence[object], rows: int, *, what: str) -> None:
    await conn.execute(sql, *head, 0, rows)


async def write_arrays(
    conn: asyncpg.Connection,
    s: str,
    level: int,
    counts: AsyncIterator[CountRecord],
    keys: AsyncIterator[KeyRecord],
    numbered: tuple[Numbered, Numbered],
    guard: RowGuard | None,
) -> None:
    """Store a small flush's `keys`, then its `counts`, sent as arrays (`s`: the quoted schema)."""
    run = _all_rows if guard is None else guard
    key_rows = [row async for row in keys]
    if key_rows:
        _, days, categories, values = (list(column) for column in zip(*key_rows, strict=True))
        await run(conn, _ARRAY_KEYS.format(s=s), (days, categories, values), numbered[1].rows, what="distinct key")
    count_rows = [row async for row in counts]
    if count_rows:
        _, starts, categories, events, sums = (list(column) for column in zip(*count_rows, strict=True))
        head = (level, starts, categories, events, sums)
        await run(conn, _ARRAY_COUNTS.format(s=s), head, numbered[0].rows, what="count row")


async def write_copied(
    conn: asyncpg.Connection,
    s: str,
    level: int,
    counts: AsyncIterator[CountRecord],
    keys: AsyncIterator[KeyRecord],
    numbered: tuple[Numbered, Numbered],
    guard: RowGuard | None,
) -> None:
    """Store a large flush's rows: copied into temporary tables, then merged (`s`: the quoted schema).

    A role without the `TEMPORARY` right on the database sends them as arrays instead, and the log
    says so each time: the flush is stored, but slower and holding the event loop longer."""
    try:
        async with conn.transaction():  # a savepoint: refused, it undoes only itself
            await conn.execute(_CREATE_TEMP)
    except asyncpg.InsufficientPrivilegeError:
        await write_arrays(conn, s, level, counts, keys, numbered, guard)
        logger.warning(
            "usage_stats: this role may not create temporary tables, so a flush of %d rows was sent as arrays "
            "(slower, and it holds the event loop longer); see GRANT TEMPORARY in docs/deployment.md",
            numbered[0].rows + numbered[1].rows,
        )
        return
    for (table, columns), records in ((_COPY_COUNTS, counts), (_COPY_KEYS, keys)):
        await conn.copy_records_to_table(table, records=records, columns=columns, schema_name="pg_temp")
    counted, keyed = numbered
    if guard is not None:  # the slow, sure way: each statement's rows halved until the refused ones are found
        await guard(conn, _INSERT_KEYS.format(s=s), (), keyed.rows, what="distinct key")
        await guard(conn, _UPSERT_COUNTS.format(s=s), (level,), counted.rows, what="count row")
        return
    if keyed.rows:
        await _merge_keys(conn, s, keyed.rows)
    if counted.rows:
        await _merge_counts(conn, s, level, counted.rows)
