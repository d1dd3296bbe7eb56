"""`bearer_token` (pure), and `user_id=` callables built on it through `UsageMiddleware`, asserting
on what reaches PostgreSQL: users by token subject, and a callable that raises (visitors, logged once)."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.conftest import StatsFactory
from usage_stats import UsageMiddleware, UsageStats, bearer_token


def scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http", "headers": list(headers)}


def jwt_for(sub: str) -> str:
    """An unsigned JWT-shaped token (header.payload.signature) whose payload names `sub`."""

    def part(data: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part({'sub': sub})}.sig"


def subject(token: str) -> str:
    """The token's `sub`. Test-only: a real app verifies the token first (see docs/counting.md)."""
    payload = token.split(".")[1]
    claims: dict[str, str] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims["sub"]


def test_bearer_token_reads_the_authorization_header() -> None:
    assert bearer_token(scope((b"authorization", b"Bearer abc.def.ghi"))) == "abc.def.ghi"
    assert bearer_token(scope((b"Authorization", b"token  xyz "))) == "xyz"
    assert bearer_token(scope((b"accept", b"*/*"), (b"authorization", b"BEARER t"))) == "t"


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"authorization", b"Basic dXNlcjpwdw==")],
        [(b"authorization", b"Bearer")],
        [(b"authorization", b"Bearer   ")],
        [(b"x-authorization", b"Bearer t")],
        [(b"authorization",)],
        ["authorization: Bearer t"],
        [("authorization", "Bearer t")],
    ],
)
def test_bearer_token_without_a_bearer_header_is_none(headers: list[Any]) -> None:
    assert bearer_token({"type": "http", "headers": headers}) is None
    assert bearer_token({"type": "http"}) is None


async def _ok(request: Request) -> Response:
    return PlainTextResponse("ok")


async def _seen(stats: UsageStats, db: asyncpg.Connection, schema: str) -> dict[str, list[bytes]]:
    """Flush, then the stored distinct keys per seen category (the `database` scheme stores them raw)."""
    await stats.flush()
    rows = await db.fetch(f'SELECT category, key FROM "{schema}".seen_keys ORDER BY 1, 2')
    found: dict[str, list[bytes]] = {}
    for row in rows:
        found.setdefault(row["category"], []).append(bytes(row["key"]))
    return found


async def test_user_id_from_a_bearer_token_counts_users_by_subject(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str
) -> None:
    def user_id(scope: Any) -> str | None:
        token = bearer_token(scope)
        return None if token is None else subject(token)

    async with make_stats(user_ids="database") as stats:
        app = UsageMiddleware(Starlette(routes=[Route("/", _ok)]), stats=stats, user_id=user_id)
        transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            for sub in ("ann", "bob", "ann"):
                assert (await c.get("/", headers={"Authorization": f"Bearer {jwt_for(sub)}"})).text == "ok"
            assert (await c.get("/")).text == "ok"  # no token: a visitor
        assert await _seen(stats, db, schema) == {"user": [b"ann", b"bob"], "visitor": [b"192.0.2.0"]}
        table = await stats.table("day")
        rows = {(r.category, r.event): r.value for p in table.periods for r in p.rows}
    assert (rows[("seen", "user")], rows[("seen", "visitor")], rows[("page", "/")]) == (2, 1, 4)


async def test_a_user_id_callable_that_raises_counts_visitors_and_is_logged_once(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = jwt_for("ann")

    def user_id(scope: Any) -> str:
        raise ValueError(f"cannot decode {bearer_token(scope)}")  # a message holding the credential

    async with make_stats(user_ids="database") as stats:
        app = UsageMiddleware(Starlette(routes=[Route("/", _ok)]), stats=stats, user_id=user_id)
        with caplog.at_level(logging.DEBUG, logger="usage_stats"):
            for network in range(3):
                transport = httpx.ASGITransport(app=app, client=(f"198.51.{network}.7", 4321))
                async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                    for _ in range(10):
                        response = await c.get("/", headers={"Authorization": f"Bearer {secret}"})
                        assert response.text == "ok"
        seen = await _seen(stats, db, schema)
        table = await stats.table("day")
    assert seen == {"visitor": [b"198.51.0.0", b"198.51.1.0", b"198.51.2.0"]}
    assert sum(r.value for p in table.periods for r in p.rows if (r.category, r.event) == ("page", "/")) == 30
    raised = [r for r in caplog.records if "user_id callable" in r.getMessage()]
    assert len(raised) == 1
    assert raised[0].levelno == logging.ERROR
    assert "ValueError" in raised[0].getMessage()
    assert secret not in caplog.text
