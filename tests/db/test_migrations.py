"""Schema creation and migration: versioned, and safe when several processes start at once."""

from __future__ import annotations

import anyio
import asyncpg

from usage_stats.db.migrations import MIGRATIONS, migrate


async def test_concurrent_migrations_create_the_schema_once(pg_dsn: str, schema: str) -> None:
    applied: list[int] = []

    async def one() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            applied.append(await migrate(conn, schema))
        finally:
            await conn.close()

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(one)
    assert sorted(applied) == [0] * 5 + [len(MIGRATIONS)]
    conn = await asyncpg.connect(pg_dsn)
    try:
        versions = [r[0] for r in await conn.fetch(f'SELECT version FROM "{schema}".schema_version ORDER BY 1')]
        assert versions == [v for v, _ in MIGRATIONS]
        tables = {
            r[0]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
            )
        }
        assert tables >= {"counts", "distinct_counts", "seen_keys", "salts", "marks", "state", "schema_version"}
        assert await migrate(conn, schema) == 0  # up to date: nothing to do
        assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".state') == 1
    finally:
        await conn.close()
