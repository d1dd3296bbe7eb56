"""Issue 9.6: an app role with only SELECT/INSERT/UPDATE/DELETE on a schema that `usage-stats
migrate` created as its owner starts, records, flushes, maintains and reads (no DDL at start).

The GRANTs are the ones `docs/deployment.md` documents, read from that page."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import anyio.to_thread
import asyncpg
import pytest

from tests.conftest import FakeClock
from usage_stats import StoreUnavailableError, UsageConfig, UsageStats
from usage_stats.cli import main
from usage_stats.db import flush

DOC = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"


def documented_grants(schema: str, role: str) -> list[str]:
    """The SQL block of the least-privilege section, for `schema` and `role`."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## A least-privilege role") :]
    block = section[section.index("```sql") + len("```sql") : section.index("```", section.index("```sql") + 6)]
    block = re.sub(r"\busage\b", f'"{schema}"', block)  # the schema name (the keyword is upper-case)
    block = re.sub(r"\bstats_app\b", f'"{role}"', block)
    return [s.strip() for s in block.split(";") if s.strip()]


async def migrate_and_grant(owner_dsn: str, schema: str, app_role: str) -> int:
    """`usage-stats migrate` as the owner, then the documented GRANTs to `app_role`; the CLI's exit status."""
    status = await anyio.to_thread.run_sync(main, ["migrate", "--dsn", owner_dsn, "--schema", schema])
    owner = await asyncpg.connect(owner_dsn)
    try:
        for statement in documented_grants(schema, app_role):
            await owner.execute(statement)
    finally:
        await owner.close()
    return status


def as_role(dsn: str, role: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{quote(role)}@{host}"))


@dataclass
class Roles:
    owner: str
    app: str


@pytest.fixture
async def roles(pg_dsn: str, schema: str) -> AsyncIterator[Roles]:
    """An owner role allowed to create schemas, and an app role with no rights at all (both dropped afterwards)."""
    suffix = uuid.uuid4().hex[:10]
    made = Roles(owner=f"stats_owner_{suffix}", app=f"stats_app_{suffix}")
    conn = await asyncpg.connect(pg_dsn)
    try:
        database = await conn.fetchval("SELECT current_database()")
        await conn.execute(f'CREATE ROLE "{made.owner}" LOGIN')
        await conn.execute(f'CREATE ROLE "{made.app}" LOGIN')
        await conn.execute(f'GRANT CREATE ON DATABASE "{database}" TO "{made.owner}"')
        yield made
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        for role in (made.app, made.owner):
            await conn.execute(f'DROP OWNED BY "{role}"')  # privileges and default privileges too
            await conn.execute(f'DROP ROLE "{role}"')
        await conn.close()


async def test_a_least_privilege_role_runs_the_app(
    pg_dsn: str, schema: str, roles: Roles, clock: FakeClock, db: asyncpg.Connection
) -> None:
    owner_dsn, app_dsn = as_role(pg_dsn, roles.owner), as_role(pg_dsn, roles.app)
    assert await migrate_and_grant(owner_dsn, schema, roles.app) == 0

    app = await asyncpg.connect(app_dsn)
    try:  # the role really is restricted: no DDL on the schema nor in the database
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app.execute(f'CREATE TABLE "{schema}".x (id int)')
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    finally:
        await app.close()

    config = UsageConfig(dsn=app_dsn, schema=schema, keep_base_days=1, keep_days=1)
    async with UsageStats(config, clock=clock) as stats:
        for day in range(3):
            stats.add("/items/{item_id}", "page", 10 + day)
            stats.seen_user("alice")
            stats.seen_visitor(f"198.51.100.{day}")
            await stats.flush()
            clock.advance(days=1)
        await stats.mark("deploy v2")
        clock.advance(days=40)  # roll-ups into months, keys and salts deleted
        maintained = await stats.maintain()
        table = await stats.table("month")
    assert (maintained[0], maintained[-1], len(maintained)) == (date(2026, 3, 10), date(2026, 4, 21), 43)
    assert await db.fetchval(f'SELECT sum(value) FROM "{schema}".counts WHERE category = $1', "page") == 33
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".counts WHERE level < 3') == 0  # rolled up
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".seen_keys') == 0
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".salts') == 0
    assert [r[0] for r in await db.fetch(f'SELECT name FROM "{schema}".marks ORDER BY id')] == ["go-live", "deploy v2"]
    rows = {(r.category, r.event): r.value for p in table.periods for r in p.rows if r.kind == "count"}
    assert rows == {("page", "/items/{item_id}"): 33}


async def test_the_app_role_waits_for_the_owner_to_migrate(
    pg_dsn: str, schema: str, roles: Roles, clock: FakeClock, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    # Deployed before `usage-stats migrate` ran: the role may not create the schema. The app starts,
    # counts in memory, says so once, and saves everything once the owner has migrated and granted.
    caplog.set_level(logging.INFO, logger="usage_stats")
    owner_dsn, app_dsn = as_role(pg_dsn, roles.owner), as_role(pg_dsn, roles.app)
    config = UsageConfig(dsn=app_dsn, schema=schema, flush_interval=timedelta(milliseconds=100))
    async with UsageStats(config, clock=clock) as stats:
        stats.add("/", "page", 5)
        with pytest.raises(StoreUnavailableError, match="permission denied"):
            await stats.flush()
        await migrate_and_grant(owner_dsn, schema, roles.app)
        with anyio.fail_after(60):
            while True:  # the background retry (backing off) gets through
                if not stats.pending:
                    break
                await anyio.sleep(0.1)
    assert await db.fetchval(f'SELECT sum(value) FROM "{schema}".counts') == 5
    errors = [r.getMessage() for r in caplog.records if r.name.startswith("usage_stats") and r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "permission denied" in errors[0]


def documented_database_grant(database: str, role: str) -> str:
    """The GRANT on the database that the least-privilege section documents (TEMPORARY, for a flush)."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## A least-privilege role") :]
    start = section.index("```sql", section.index("```sql") + 6) + len("```sql")
    block = section[start : section.index("```", start)].strip().rstrip(";")
    block = re.sub(r"\bapp\b", f'"{database}"', block)
    return re.sub(r"\bstats_app\b", f'"{role}"', block)


def on_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


async def test_a_large_flush_copies_with_temporary_on_the_database_and_sends_arrays_without(
    pg_dsn: str,
    schema: str,
    roles: Roles,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A large flush copies its rows into temporary tables of its transaction, which takes TEMPORARY on
    the database (PUBLIC has it by default). Where the database revokes it, the flush is still stored,
    sent as arrays, and the log says so; with the documented GRANT it copies again."""
    monkeypatch.setattr(flush, "SMALL_FLUSH", 0)  # every flush is a large one
    caplog.set_level(logging.INFO, logger="usage_stats")
    database = "t_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        dsn = on_database(pg_dsn, database)
        here = await asyncpg.connect(dsn)
        try:
            await here.execute(f'REVOKE TEMPORARY ON DATABASE "{database}" FROM PUBLIC')
            await here.execute(f'GRANT CREATE ON DATABASE "{database}" TO "{roles.owner}"')
            owner_dsn, app_dsn = as_role(dsn, roles.owner), as_role(dsn, roles.app)
            assert await migrate_and_grant(owner_dsn, schema, roles.app) == 0
            config = UsageConfig(dsn=app_dsn, schema=schema, flush_interval=timedelta(hours=1))
            async with UsageStats(config, clock=clock) as stats:
                stats.add("/", "page", 5)
                stats.seen_visitor("198.51.100.7")
                await stats.flush()
                warnings = [r.getMessage() for r in caplog.records if "temporary tables" in r.getMessage()]
                assert len(warnings) == 1
                assert "a flush of 2 rows was sent as arrays" in warnings[0]
                await here.execute(documented_database_grant(database, roles.app))
                caplog.clear()
                stats.add("/", "page", 2)
                stats.seen_visitor("203.0.113.9")
                await stats.flush()
                assert not [r for r in caplog.records if "temporary tables" in r.getMessage()]
            s = f'"{schema}"'
            assert await here.fetchval(f"SELECT sum(value) FROM {s}.counts WHERE category = 'page'") == 7
            assert await here.fetchval(f"SELECT count(*) FROM {s}.seen_keys") == 2
        finally:
            await here.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
