"""Issue 4.3: `uvicorn --workers 4` under load from many addresses and users: totals and distinct
counts exact, one `go-live` mark, and day-end maintenance from every worker at once gives the same
rows as from one process."""

from __future__ import annotations

import ipaddress
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import anyio.to_thread
import asyncpg
import pytest

from tests.conftest import FakeClock, StatsFactory, stored_state

from .app import CACHE_CATEGORY, CACHE_EVENT
from .server import Load, UvicornProcess, stored_counts

DAY = datetime(2026, 3, 10, tzinfo=UTC)  # the conftest clock's day
REQUESTS = 1500


def _request(n: int) -> tuple[str, dict[str, str]]:
    if n % 3 == 0:
        return f"/items/{n % 30}", {"X-User": f"user-{n % 97}"}
    if n % 7 == 0:
        return f"/items/{n % 30}", {"X-Forwarded-For": f"2001:db8:{n % 11:x}::{n % 1000:x}"}
    v = n % 400
    return f"/items/{n % 30}", {"X-Forwarded-For": f"198.{18 + v // 256}.{v % 256}.{n % 250}, 127.0.0.1"}


def _expected_distinct() -> tuple[int, int]:
    users, networks = set(), set()
    for n in range(REQUESTS):
        _, headers = _request(n)
        if "X-User" in headers:
            users.add(headers["X-User"])
        else:
            ip = ipaddress.ip_address(headers["X-Forwarded-For"].split(",")[0])
            networks.add(ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 48}", strict=False))
    return len(users), len(networks)


def _env(schema: str, pg_dsn: str, scheme: str, at: datetime) -> dict[str, str]:
    return {
        "USAGE_STATS_DSN": pg_dsn,
        "USAGE_STATS_SCHEMA": schema,
        "USAGE_STATS_FLUSH_INTERVAL": "0.5",
        "USAGE_STATS_USER_IDS": scheme,
        "USAGE_STATS_TRUSTED_PROXIES": "127.0.0.1/32",
        "USAGE_STATS_KEEP_BASE_DAYS": "0",  # so that day-end maintenance also rolls base rows up
        "RELIABILITY_CLOCK_OFFSET": str((at - datetime.now(UTC)).total_seconds()),
    }


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["hashed", "database"])
async def test_four_workers_count_exactly_and_maintain_as_one(
    pg_dsn: str,
    schema: str,
    second_schema: str,
    scheme: str,
    tmp_path: Path,
    make_stats: StatsFactory,
    clock: FakeClock,
    db: asyncpg.Connection,
) -> None:
    # Day D: four workers under load from many addresses and users.
    server = UvicornProcess(tmp_path / "day.log", _env(schema, pg_dsn, scheme, DAY + timedelta(hours=12)), workers=4)
    try:
        await anyio.to_thread.run_sync(server.wait_ready)
        load = Load(server.url, _request, concurrency=8, max_requests=REQUESTS, keepalive=False)
        await load.run(60)
        started = time.monotonic()
        await anyio.to_thread.run_sync(server.stop)
        shutdown = time.monotonic() - started
    finally:
        server.close()
    assert len(load.ok) == REQUESTS
    stored = await stored_counts(pg_dsn, schema)
    assert stored[("page", "/items/{item_id}")] == REQUESTS
    assert stored[("status", "2xx")] == REQUESTS
    assert stored[(CACHE_CATEGORY, CACHE_EVENT)] == REQUESTS
    pids = {r.pid for r in load.ok}
    assert len(pids) >= 3  # a connection per request: the kernel spreads them over the workers
    users, visitors = _expected_distinct()
    clock.set(DAY + timedelta(hours=13))
    async with make_stats(user_ids=scheme) as stats:
        today = (await stats.table("day")).periods[0]
    assert today.get("seen", "user", "distinct").value == users  # type: ignore[union-attr]
    assert today.get("seen", "visitor", "distinct").value == visitors  # type: ignore[union-attr]
    assert await db.fetchval(f"SELECT count(*) FROM \"{schema}\".marks WHERE name = 'go-live'") == 1

    # The same data in a second schema, maintained by one process.
    clock.set(DAY + timedelta(hours=12))
    same = {"user_ids": scheme, "keep_base_days": 0, "flush_interval": timedelta(seconds=0.5)}
    async with make_stats(schema=second_schema, **same) as one:
        for table in ("counts", "seen_keys", "salts"):
            await db.execute(f'INSERT INTO "{second_schema}".{table} SELECT * FROM "{schema}".{table}')
        clock.set(DAY + timedelta(days=1, minutes=20))
        assert await one.maintain() == [DAY.date()]

    # Day D+1, after the grace period: four workers start, and each runs day-end maintenance at once.
    env = _env(schema, pg_dsn, scheme, DAY + timedelta(days=1, minutes=20))
    server = UvicornProcess(tmp_path / "next-day.log", env, workers=4)
    try:
        await anyio.to_thread.run_sync(server.wait_ready)
        deadline = time.monotonic() + 20
        while await db.fetchval(f'SELECT maintained_through FROM "{schema}".state') is None:
            assert time.monotonic() < deadline, server.log()
            await anyio.sleep(0.2)
        await anyio.to_thread.run_sync(server.stop)
    finally:
        server.close()
    by_workers, by_one = await stored_state(db, schema), await stored_state(db, second_schema)
    print(
        f"\n4 workers ({len(pids)} answered), {scheme}: {REQUESTS} requests, {users} users, {visitors} visitors, "
        f"shutdown {shutdown:.2f} s"
    )
    assert by_workers == by_one
    assert by_workers["keys"] == by_workers["salts"] == []
    assert by_workers["state"] == [(DAY.date(),)]
    distinct = {r[2]: r[3] for r in by_workers["distinct"]}
    assert distinct == {"user": users, "visitor": visitors}
    assert sum(int(str(r[4])) for r in by_workers["counts"] if r[2] == "page") == REQUESTS
    assert {r[0] for r in by_workers["counts"]} == {2}  # base rows rolled into the day
    assert await db.fetchval(f"SELECT count(*) FROM \"{schema}\".marks WHERE name = 'go-live'") == 1
