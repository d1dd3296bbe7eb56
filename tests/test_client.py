"""The client address: `scope["client"]`, and only the forwarding header that trusted proxies set
(pure), then what an attacker behind a trusted proxy gets stored (PostgreSQL)."""

from __future__ import annotations

import ipaddress
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.conftest import StatsFactory
from usage_stats import UsageMiddleware, UsageStats
from usage_stats.client import ClientAddress

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8:ffff::/48"))


def scope(peer: str | None, *headers: tuple[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "client": (peer, 1234) if peer is not None else None,
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
    }


def test_no_trusted_proxies_uses_the_peer_and_ignores_headers() -> None:
    find = ClientAddress(())
    assert find(scope("203.0.113.9", ("x-forwarded-for", "198.51.100.1"))) == "203.0.113.9"
    assert find(scope("203.0.113.9", ("forwarded", "for=198.51.100.1"))) == "203.0.113.9"


def test_spoofed_headers_from_an_untrusted_peer_are_ignored() -> None:
    find = ClientAddress(PROXIES)
    assert find(scope("203.0.113.9", ("x-forwarded-for", "198.51.100.1"))) == "203.0.113.9"
    assert find(scope("203.0.113.9", ("forwarded", "for=198.51.100.1"))) == "203.0.113.9"


def test_x_forwarded_for_from_a_trusted_proxy() -> None:
    find = ClientAddress(PROXIES)
    assert find(scope("10.0.0.2", ("X-Forwarded-For", "198.51.100.1"))) == "198.51.100.1"


def test_client_cannot_spoof_through_a_trusted_proxy() -> None:
    # The client sent "X-Forwarded-For: 1.2.3.4"; the proxy appended the real peer.
    find = ClientAddress(PROXIES)
    assert find(scope("10.0.0.2", ("x-forwarded-for", "1.2.3.4, 198.51.100.1"))) == "198.51.100.1"
    # two trusted proxies in a row are skipped
    assert find(scope("10.0.0.2", ("x-forwarded-for", "1.2.3.4, 198.51.100.1, 10.0.0.7"))) == "198.51.100.1"


def test_several_x_forwarded_for_headers_are_joined_in_order() -> None:
    find = ClientAddress(PROXIES)
    s = scope("10.0.0.2", ("x-forwarded-for", "1.2.3.4"), ("x-forwarded-for", "198.51.100.1"))
    assert find(s) == "198.51.100.1"


def test_forwarded_header() -> None:
    find = ClientAddress(PROXIES, "forwarded")
    assert find(scope("10.0.0.2", ("forwarded", "for=198.51.100.1;proto=https;by=10.0.0.2"))) == "198.51.100.1"
    assert find(scope("10.0.0.2", ("forwarded", 'for="[2001:db8::17]:4711"'))) == "2001:db8::17"
    assert find(scope("10.0.0.2", ("forwarded", "for=1.2.3.4, for=198.51.100.1:8080"))) == "198.51.100.1"
    assert find(scope("10.0.0.2", ("Forwarded", "For=198.51.100.1"))) == "198.51.100.1"


def test_only_x_forwarded_for_is_believed_by_default() -> None:
    # A proxy that appends only X-Forwarded-For passes the client's own Forwarded header through.
    find = ClientAddress(PROXIES)
    s = scope("10.0.0.2", ("forwarded", "for=6.6.6.6"), ("x-forwarded-for", "198.51.100.1"))
    assert find(s) == "198.51.100.1"
    assert find(scope("10.0.0.2", ("forwarded", "for=6.6.6.6"))) == "10.0.0.2"


def test_only_forwarded_is_believed_when_configured() -> None:
    find = ClientAddress(PROXIES, "forwarded")
    s = scope("10.0.0.2", ("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=198.51.100.1"))
    assert find(s) == "198.51.100.1"
    assert find(scope("10.0.0.2", ("x-forwarded-for", "6.6.6.6"))) == "10.0.0.2"


def test_unknown_header_is_refused() -> None:
    with pytest.raises(ValueError, match="header"):
        ClientAddress(PROXIES, "x-real-ip")


def test_all_hops_trusted_gives_the_farthest() -> None:
    find = ClientAddress(PROXIES)
    assert find(scope("10.0.0.2", ("x-forwarded-for", "10.0.0.9, 10.0.0.8"))) == "10.0.0.9"


def test_trusted_proxy_without_headers_is_the_client() -> None:
    assert ClientAddress(PROXIES)(scope("10.0.0.2")) == "10.0.0.2"


def test_ipv6_and_mapped_proxies() -> None:
    find = ClientAddress(PROXIES)
    assert find(scope("2001:db8:ffff::1", ("x-forwarded-for", "198.51.100.1"))) == "198.51.100.1"
    assert find(scope("::ffff:10.0.0.2", ("x-forwarded-for", "198.51.100.1"))) == "198.51.100.1"
    assert find(scope("10.0.0.2", ("x-forwarded-for", "[2001:db8::5]:443"))) == "2001:db8::5"
    assert find(scope("10.0.0.2", ("x-forwarded-for", "192.0.2.5:443"))) == "192.0.2.5"


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "http"},
        {"type": "http", "client": None},
        {"type": "http", "client": ()},
        {"type": "http", "client": (None, 0)},
        {"type": "http", "client": "192.0.2.1"},
    ],
)
def test_missing_or_odd_client_gives_none(bad: dict[str, Any]) -> None:
    assert ClientAddress(PROXIES)(bad) is None


def test_malformed_headers_do_not_raise() -> None:
    find = ClientAddress(PROXIES)
    s: dict[str, Any] = {"type": "http", "client": ("10.0.0.2", 1), "headers": [(b"x-forwarded-for",), None, 5]}
    assert find(s) == "10.0.0.2"
    s = scope("10.0.0.2", ("x-forwarded-for", 'garbage, , ""'))
    assert find(s) == "garbage"  # returned as is; the address cutter turns it into no visitor
    s = {"type": "http", "client": ("10.0.0.2", 1), "headers": "nope"}
    assert find(s) == "10.0.0.2"
    s = scope("10.0.0.2", ("x-forwarded-for", "1" * 500))
    assert find(s) == "10.0.0.2"  # an over-long hop is dropped


async def _ok(request: Request) -> Response:
    return PlainTextResponse("ok")


async def _visitors(stats: UsageStats, db: asyncpg.Connection, schema: str) -> tuple[float, int]:
    """Today's distinct visitors as the day table shows them, and the visitor keys stored."""
    await stats.flush()
    table = await stats.table("day")
    shown = [r.value for p in table.periods for r in p.rows if (r.category, r.event) == ("seen", "visitor")]
    stored = await db.fetchval(f'SELECT count(*) FROM "{schema}".seen_keys WHERE category = $1', "visitor")
    return sum(shown), stored


async def _attack(stats: UsageStats, believed: str, spoofed: str) -> None:
    """One client (198.51.100.7) behind a trusted proxy (10.1.1.1) that sets only `believed`,
    sending 50 requests with a different `spoofed` header each (one network each, /24 cut)."""
    app = UsageMiddleware(Starlette(routes=[Route("/", _ok)]), stats=stats)
    transport = httpx.ASGITransport(app=app, client=("10.1.1.1", 4321))
    real = "for=198.51.100.7" if believed == "forwarded" else "198.51.100.7"
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        for i in range(50):
            fake = f"for=203.0.{i}.9" if spoofed == "forwarded" else f"203.0.{i}.9"
            response = await c.get("/", headers=[(spoofed, fake), (believed, real)])
            assert response.text == "ok"


async def test_a_spoofed_forwarded_header_counts_one_visitor_by_default(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str
) -> None:
    async with make_stats(trusted_proxies=("10.0.0.0/8",)) as stats:
        await _attack(stats, believed="x-forwarded-for", spoofed="forwarded")
        assert await _visitors(stats, db, schema) == (1, 1)


async def test_a_spoofed_x_forwarded_for_is_ignored_when_forwarded_is_configured(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str
) -> None:
    async with make_stats(trusted_proxies=("10.0.0.0/8",), forwarded_header="forwarded") as stats:
        await _attack(stats, believed="forwarded", spoofed="x-forwarded-for")
        assert await _visitors(stats, db, schema) == (1, 1)
