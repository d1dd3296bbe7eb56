"""Versioned schema migrations, safe when several processes start at once (advisory lock)."""

from __future__ import annotations

import logging
from importlib import resources

import asyncpg

__all__ = ["LATEST", "LOCK_DAY_END", "LOCK_MIGRATE", "MIGRATIONS", "migrate", "quote_ident", "schema_version"]

logger = logging.getLogger(__name__)

LOCK_MIGRATE = 1
LOCK_DAY_END = 2


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (the schema name is validated by `UsageConfig` as well)."""
    return '"' + name.replace('"', '""') + '"'


def _load() -> list[tuple[int, str]]:
    folder = resources.files(__package__) / "sql"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql") and entry.name[:4].isdigit():
            found.append((int(entry.name[:4]), entry.read_text(encoding="utf-8")))
    return sorted(found)


MIGRATIONS = _load()
LATEST = MIGRATIONS[-1][0]


async def schema_version(conn: asyncpg.Connection, schema: str) -> int | None:
    """The migration version of `schema`, or None when it holds no usage_stats tables (reads only)."""
    q = quote_ident(schema)
    async with conn.transaction():  # one transaction: both reads on one server connection behind a pooler
        found = await conn.fetchval("SELECT to_regclass($1)", f"{q}.schema_version")
        if found is None:
            return None
        version: int = await conn.fetchval(f"SELECT coalesce(max(version), 0) FROM {q}.schema_version")
    return version


async def migrate(conn: asyncpg.Connection, schema: str) -> int:
    """Create or bring `schema` up to date; returns the number of migrations applied.

    A schema already at `LATEST` (or newer) is only read: no lock, no DDL, so a role with nothing
    but SELECT/INSERT/UPDATE/DELETE on the tables can start once the owner has migrated the schema.
    """
    current = await schema_version(conn, schema)
    if current is not None and current >= LATEST:
        return 0
    q = quote_ident(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1), $2)", schema, LOCK_MIGRATE)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {q}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {q}.schema_version"
            " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await conn.fetchval(f"SELECT coalesce(max(version), 0) FROM {q}.schema_version")
        applied = 0
        for version, sql in MIGRATIONS:
            if version <= current:
                continue
            await conn.execute(sql.replace("{schema}", q))
            await conn.execute(f"INSERT INTO {q}.schema_version (version) VALUES ($1)", version)
            logger.info("usage_stats: applied migration %04d to schema %s", version, schema)
            applied += 1
        return applied
