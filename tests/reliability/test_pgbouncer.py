"""Issue 9.5: through a real pgbouncer in transaction mode (one server connection shared by every
client, transaction by transaction), several processes record, flush, mark, maintain and read."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import anyio
import anyio.to_thread
import asyncpg
import pytest

from tests.conftest import FakeClock
from usage_stats import UsageConfig, UsageStats
from usage_stats.cli import main

from .bouncer import PgBouncer
from .server import ROOT, stored_counts

# One worker process: counts, flushes, marks and reads through the DSN and settings of its environment.
WORKER = """
import asyncio, sys
from usage_stats import UsageConfig, UsageStats

async def main() -> None:
    async with UsageStats(UsageConfig.from_env()) as stats:
        stats.add(sys.argv[1], "worker", 50)
        stats.seen_user(sys.argv[1])
        await stats.flush()
        await stats.mark("deploy " + sys.argv[1])
        table = await stats.table("day")
        print(sum(r.value for p in table.periods for r in p.rows if r.category == "worker"))

asyncio.run(main())
"""


def run_worker(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WORKER, name], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def bouncer(pg_dsn: str) -> Iterator[PgBouncer]:
    with PgBouncer(pg_dsn, pool_mode="transaction", pool_size=1) as running:
        yield running


def worker_env(dsn: str, schema: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("USAGE_STATS_")}
    env.update({"USAGE_STATS_DSN": dsn, "USAGE_STATS_SCHEMA": schema}, **settings)
    return env


async def test_the_default_statement_cache_breaks_behind_pgbouncer(bouncer: PgBouncer, schema: str) -> None:
    # The fault itself: a second process prepares the statement names the first left on the shared
    # server connection (asyncpg numbers them per process).
    env = worker_env(bouncer.dsn, schema)
    first = await anyio.to_thread.run_sync(run_worker, "a", env)
    second = await anyio.to_thread.run_sync(run_worker, "b", env)
    assert first.returncode == 0, first.stderr
    assert second.returncode != 0
    assert "DuplicatePreparedStatementError" in second.stderr


async def test_two_processes_and_the_cli_work_through_pgbouncer_without_the_statement_cache(
    bouncer: PgBouncer, pg_dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch, db: asyncpg.Connection
) -> None:
    env = worker_env(bouncer.dsn, schema, USAGE_STATS_STATEMENT_CACHE_SIZE="0")
    for name in ("a", "b"):  # the schema is created through pgbouncer by the first
        done = await anyio.to_thread.run_sync(run_worker, name, env)
        assert done.returncode == 0, done.stderr
        assert int(done.stdout) >= 50

    clock = FakeClock(datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0))
    config = UsageConfig(dsn=bouncer.dsn, schema=schema, statement_cache_size=0, keep_base_days=1)
    async with UsageStats(config, clock=clock) as stats:
        for _ in range(3):
            for n in range(40):
                stats.count(f"/p{n % 4}", "page")
                stats.seen_visitor(f"198.51.{n}.7")  # 40 networks
            # Flushes and reads at once: several pooled connections over the one server connection.
            async with anyio.create_task_group() as tg:
                tg.start_soon(stats.flush)
                tg.start_soon(stats.table, "day")
                tg.start_soon(stats.marks)
            clock.advance(days=1)
        await stats.mark("deploy c")
        maintained = await stats.maintain()
        table = await stats.table("day")

    monkeypatch.setenv("USAGE_STATS_STATEMENT_CACHE_SIZE", "0")
    for argv in (["mark", "deploy d"], ["maintain"], ["migrate"], ["report", "--format", "json"]):
        status = await anyio.to_thread.run_sync(main, [*argv, "--dsn", bouncer.dsn, "--schema", schema])
        assert status == 0, argv

    stored = await stored_counts(pg_dsn, schema)
    assert stored == {("worker", "a"): 50, ("worker", "b"): 50, **{("page", f"/p{i}"): 30 for i in range(4)}}
    assert len(maintained) >= 3
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".counts WHERE level = 1') == 4  # today's only
    marks = [r[0] for r in await db.fetch(f'SELECT name FROM "{schema}".marks ORDER BY id')]
    assert marks == ["go-live", "deploy a", "deploy b", "deploy c", "deploy d"]
    days = {p.start.date(): p for p in table.periods}
    assert [days[d].get("seen", "visitor", "distinct").value for d in sorted(days)][-3:] == [40, 40, 40]  # type: ignore[union-attr]
    assert "DuplicatePreparedStatement" not in bouncer.log()
