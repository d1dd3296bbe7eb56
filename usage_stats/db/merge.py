"""Merging a flush's copied rows (temporary tables `flush_counts` and `flush_keys`) into the stored
counts and distinct keys, one statement per table, each sorting its rows so that concurrent flushes
from many processes take their row locks in the same order (no deadlock).

The fast way (`merge_counts`, `merge_keys`) first updates the count rows that are stored already;
what is left is new, and is inserted by a plain `INSERT ... SELECT`, which costs about half of an
`INSERT ... ON CONFLICT` (no speculative insertion per row: measured in benchmarks/flush.py). If
another process stored one of those rows meanwhile, the insert meets a unique violation: it is
undone (a savepoint) and the same rows go in by `ON CONFLICT` instead, which is always right.

`UPSERT_COUNTS` and `INSERT_KEYS` are that always-right way for a range of rows (`lo < n <= hi`),
for `isolate.RowGuard` to halve when the database refuses some row.
"""

from __future__ import annotations

import asyncpg

from .saturating import saturating

__all__ = ["COPY_COUNTS", "COPY_KEYS", "CREATE_TEMP", "INSERT_KEYS", "UPSERT_COUNTS", "merge_counts", "merge_keys"]

# Dropped at the end of the flush's transaction, so a transaction-pooling proxy is no obstacle; named
# in pg_temp everywhere, so that no table on the search path can stand in for them.
CREATE_TEMP = """
CREATE TEMPORARY TABLE flush_counts (n int, start timestamptz, category text, event text, value bigint)
ON COMMIT DROP;
CREATE TEMPORARY TABLE flush_keys (n int, day date, category text, key bytea) ON COMMIT DROP
"""
COPY_COUNTS = ("flush_counts", ("n", "start", "category", "event", "value"))
COPY_KEYS = ("flush_keys", ("n", "day", "category", "key"))

# Added to what is stored, saturating at the bounds of bigint (a stored sum that overflowed would
# fail every flush).
_ADD = "DO UPDATE SET value = least(greatest(c.value::numeric + excluded.value, {lo}), {hi})"

UPSERT_COUNTS = saturating(f"""
INSERT INTO {{s}}.counts AS c (level, start, category, event, value)
SELECT $1, k.start, k.category, k.event, k.value FROM pg_temp.flush_counts AS k
WHERE k.n > $2 AND k.n <= $3
ORDER BY k.start, k.category, k.event
ON CONFLICT (level, start, category, event) {_ADD}
""")

INSERT_KEYS = """
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


async def merge_counts(conn: asyncpg.Connection, s: str, level: int, rows: int) -> None:
    """Add the `rows` copied count rows to the stored ones (`s`: the quoted schema)."""
    await conn.execute(_UPDATE_STORED.format(s=s), level)
    try:
        async with conn.transaction():
            await conn.execute(_INSERT_NEW_COUNTS.format(s=s), level)
    except asyncpg.UniqueViolationError:  # another process stored one of them since
        await conn.execute(UPSERT_COUNTS.format(s=s), level, 0, rows)


async def merge_keys(conn: asyncpg.Connection, s: str, rows: int) -> None:
    """Store the `rows` copied distinct keys, each once (`s`: the quoted schema)."""
    try:
        async with conn.transaction():
            await conn.execute(_INSERT_NEW_KEYS.format(s=s))
    except asyncpg.UniqueViolationError:  # another process stored one of them since
        await conn.execute(INSERT_KEYS.format(s=s), 0, rows)
