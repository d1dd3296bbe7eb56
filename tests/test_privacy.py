"""After real requests, no raw address and no raw user ID anywhere in the schema (every text and
bytea column of every table), except the `database` scheme's own `seen_keys` rows."""

from __future__ import annotations

import ipaddress

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser, SimpleUser
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.conftest import FakeClock, StatsFactory
from usage_stats import UsageMiddleware

ADDRESSES = ["198.51.100.123", "203.0.113.77", "2001:db8:1234:5678::abcd", "::ffff:192.0.2.201"]
USERS = ["alice.smith@example.org", "user-8675309", "Bob Example"]
APP_USER = 424242  # given to seen_user() by the app itself


class HeaderAuth(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        name = conn.headers.get("x-user")
        return (AuthCredentials(["authenticated"]), SimpleUser(name)) if name else None


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


def needles(value: str) -> list[bytes]:
    """The ways a value could be stored: as text, and for an address also packed."""
    found = [value.encode()]
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return found
    found.append(ip.packed)
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        found += [str(mapped).encode(), mapped.packed]
    return found


async def scan(db: asyncpg.Connection, schema: str) -> list[tuple[str, str, bytes]]:
    """Every value of every text-like or bytea column of every table in `schema`."""
    columns = await db.fetch(
        """SELECT c.relname AS table, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'm') AND a.attnum > 0 AND NOT a.attisdropped""",
        schema,
    )
    tables = {c["table"] for c in columns}
    assert {"counts", "seen_keys", "marks", "salts", "distinct_counts"} <= tables
    values: list[tuple[str, str, bytes]] = []
    for c in columns:
        kind = c["type"]
        if kind == "bytea":
            expr = f'"{c["column"]}"'
        elif kind in ("text", "name", "json", "jsonb") or kind.startswith(("character", "text[]")):
            expr = f"convert_to(\"{c['column']}\"::text, 'UTF8')"
        else:
            continue
        for row in await db.fetch(
            f'SELECT {expr} AS v FROM "{schema}"."{c["table"]}" WHERE "{c["column"]}" IS NOT NULL'
        ):
            values.append((c["table"], c["column"], bytes(row["v"])))
    return values


@pytest.mark.parametrize("scheme", ["hashed", "memory", "database"])
async def test_no_raw_address_or_user_id_is_stored(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection, schema: str, scheme: str
) -> None:
    async with make_stats(user_ids=scheme) as stats:
        app = Starlette(routes=[Route("/users/{user_id}", ok), Route("/", ok)])
        app.add_middleware(AuthenticationMiddleware, backend=HeaderAuth())
        app.add_middleware(UsageMiddleware, stats=stats)
        for address in ADDRESSES:
            transport = httpx.ASGITransport(app=app, client=(address, 50123))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                await client.get("/")
                for user in USERS:
                    # the user ID is in the path too: the event is the template, never the raw path
                    await client.get(f"/users/{user}", headers={"x-user": user})
                    await client.get(f"/no-route/{user}/{address}")
        stats.seen_user(APP_USER)
        stats.seen_visitor(ADDRESSES[0], category="visitor-GB")
        await stats.mark("deploy")
        await stats.flush()
        table = await stats.table("day")
        values = await scan(db, schema)

    day = table.periods[0]
    assert day.get("seen", "user", "distinct").value == len(USERS) + 1  # type: ignore[union-attr]
    assert day.get("seen", "visitor", "distinct").value == len(ADDRESSES)  # type: ignore[union-attr]
    assert day.get("page", "/users/{user_id}").value == len(USERS) * len(ADDRESSES)  # type: ignore[union-attr]
    assert values  # the scan saw the data

    for address in ADDRESSES:
        for needle in needles(address):
            hits = [(t, c) for t, c, v in values if needle in v]
            assert hits == [], f"{address} stored in {hits}"
    for user in [*USERS, str(APP_USER)]:
        hits = [(t, c) for t, c, v in values if user.encode() in v]
        if scheme == "database":
            assert hits == [("seen_keys", "key")]  # the documented exception, deleted at day end
        else:
            assert hits == [], f"{user} stored in {hits}"

    cut = [b"198.51.100.0", b"2001:db8:1234::", b"192.0.2.0"]
    in_keys = [v for t, c, v in values if (t, c) == ("seen_keys", "key")]
    if scheme == "database":
        assert set(cut) <= set(in_keys)  # cut networks, never whole addresses
    else:  # hashed and memory keep not even the cut network
        assert not [n for n in cut for v in (v for _, _, v in values) if n in v]
    assert all(len(v) == 16 for v in in_keys) or scheme == "database"
