"""Issue 4.5: hostile requests, in-process through raw ASGI calls: the response is unchanged, nothing
raises into the app, spoofed forwarding headers are ignored, stored names are sanitised."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from tests.conftest import StatsFactory
from usage_stats import UsageMiddleware, UsageStats
from usage_stats.sanitise import MAX_NAME

Response = tuple[int, list[tuple[bytes, bytes]], bytes]


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"hello {request.path_params.get('item_id', '')}")


def _raw_path_event(scope: MutableMapping[str, Any], status: int) -> str | None:
    """The worst configuration: an event name made from the raw path."""
    path = scope.get("path")
    return path if isinstance(path, str) else None


class HostileUser:
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def identity(self) -> str:
        raise RuntimeError("identity")

    @property
    def display_name(self) -> str:
        raise LookupError("display_name")


class ExplodingUser:
    def __getattr__(self, name: str) -> object:
        raise ValueError(name)


def _apps(stats: UsageStats) -> tuple[ASGIApp, ASGIApp, ASGIApp]:
    routes = [Route("/items/{item_id:int}", _hello), Route("/hello", _hello)]
    bare = Starlette(routes=routes)
    counted = UsageMiddleware(Starlette(routes=routes), stats=stats)
    raw_named = UsageMiddleware(Starlette(routes=routes), stats=stats, event_name=_raw_path_event)
    return bare, counted, raw_named


async def _call(app: ASGIApp, scope: dict[str, Any]) -> Response:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(dict(scope), receive, send)  # a fresh scope: the app writes into it
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], list(start.get("headers", [])), body


def _scope(path: str, headers: list[tuple[bytes, bytes]], client: object, user: object = None) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "server": ("127.0.0.1", 8000),
    }
    if client is not _MISSING:
        scope["client"] = client
    if user is not None:
        scope["user"] = user
    return scope


_MISSING = object()

CORPUS: list[tuple[str, list[tuple[bytes, bytes]], object, object]] = [
    ("/items/1", [(b"x-forwarded-for", b"203.0.113.9")], ("192.0.2.33", 5000), None),  # spoofed: ignored
    ("/items/1", [(b"forwarded", b"for=203.0.113.9")], ("192.0.2.33", 5000), None),
    ("/items/2", [(b"x-forwarded-for", b"1.1.1.1")] * 50, ("10.0.0.1", 1), None),  # repeated, trusted proxy
    ("/items/2", [(b"x-forwarded-for", b"\xff\xfe\x00garbage, ,,;")], ("10.0.0.1", 1), None),
    ("/items/2", [(b"forwarded", b'for="[fe80::1%eth0]:80";proto=http, for=unknown')], ("10.0.0.1", 1), None),
    ("/items/2", [(b"forwarded", b"for=" + b"9" * 10_000)], ("10.0.0.1", 1), None),
    ("/hello\x00", [(b"user-agent", b"\x00\xff\xfe")], ("192.0.2.1", 1), None),
    ("/hello/\udcff\udcfe", [], ("192.0.2.1", 1), None),  # non-UTF-8 bytes decoded with surrogateescape
    ("/" + "a" * 100_000, [], ("192.0.2.1", 1), None),  # a 100 kB path
    ("/items/3", [], _MISSING, None),  # a Unix socket: no "client"
    ("/items/3", [], None, None),
    ("/items/3", [], ("fe80::1%eth0", 1), None),  # IPv6 with a zone ID
    ("/items/3", [], ("2001:db8::1%25", 1), None),
    ("/items/3", [], ("not an address", 1), None),
    ("/items/3", [], ("x" * 1000, 1), None),
    ("/items/4", [], ("192.0.2.1", 1), HostileUser()),
    ("/items/4", [], ("192.0.2.1", 1), ExplodingUser()),
]


@pytest.fixture
async def stats(make_stats: StatsFactory) -> Any:
    async with make_stats(trusted_proxies=("10.0.0.0/8",)) as started:
        yield started


async def _check_stored_names(db: asyncpg.Connection, schema: str) -> list[str]:
    names = [r[0] for r in await db.fetch(f'SELECT category || event FROM "{schema}".counts')]
    for name in names:
        assert "\x00" not in name
        assert len(name) <= 2 * MAX_NAME
    return names


async def test_fixed_corpus(stats: UsageStats, db: asyncpg.Connection, schema: str) -> None:
    bare, counted, raw_named = _apps(stats)
    for path, headers, client, user in CORPUS:
        scope = _scope(path, headers, client, user)
        expected = await _call(bare, scope)
        assert await _call(counted, scope) == expected, path[:50]
        assert await _call(raw_named, scope) == expected, path[:50]
    pending = stats.pending
    events = {key: n for counts in pending.counts.values() for key, n in counts.items() if key[0] != "status"}
    assert sum(events.values()) == 2 * len(CORPUS)  # every request counted, twice (two middlewares)
    visitors = {v for seen in pending.seen.values() for v in seen.get(("v", "visitor"), set())}
    assert "203.0.113.0" not in visitors  # forwarding headers from an untrusted client are ignored
    assert "192.0.2.0" in visitors
    assert "1.1.1.0" in visitors  # ... and believed from a trusted proxy
    assert all("%" not in v for v in visitors)
    await stats.flush()
    names = await _check_stored_names(db, schema)
    assert "bad-req/hello" in names  # NUL removed from the raw-path event name
    assert "bad-req/hello/??" in names  # undecodable bytes replaced
    assert "bad-req/" + "a" * (MAX_NAME - 1) in names  # the 100 kB path capped


_HEADER_NAMES = st.sampled_from([b"x-forwarded-for", b"forwarded", b"x-user", b"host", b"X-Forwarded-For"])
_HOSTS = ["10.1.2.3", "192.0.2.1", "fe80::1%eth0", "::ffff:10.0.0.1", "", "::"]
_CLIENTS = st.one_of(
    st.just(_MISSING),
    st.none(),
    st.tuples(
        st.one_of(st.sampled_from(_HOSTS), st.text(max_size=80)),
        st.integers(0, 65535),
    ),
    st.lists(st.integers(), max_size=2),
    st.text(max_size=5),
)


@pytest.mark.anyio
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.one_of(st.sampled_from(["/items/1", "/hello", "/"]), st.text(max_size=300).map(lambda t: "/" + t)),
    headers=st.lists(st.tuples(st.one_of(_HEADER_NAMES, st.binary(max_size=10)), st.binary(max_size=300)), max_size=6),
    client=_CLIENTS,
    user=st.sampled_from([None, HostileUser(), ExplodingUser()]),
)
async def test_property_hostile_requests_change_nothing(
    stats: UsageStats, db: asyncpg.Connection, schema: str, path: str, headers: Any, client: object, user: object
) -> None:
    bare, counted, raw_named = _apps(stats)
    scope = _scope(path, headers, client, user)
    before = stats.pending.total_counts
    expected = await _call(bare, scope)
    assert await _call(counted, scope) == expected
    assert await _call(raw_named, scope) == expected
    assert stats.pending.total_counts == before + 4  # an event and a status class, for each middleware
    await stats.flush()
    await _check_stored_names(db, schema)
