"""`UsageMiddleware` in FastAPI and Starlette apps, asserting on the counts that reach PostgreSQL."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser, SimpleUser
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from tests.apps import client, http_scope, recorded, shop_app
from tests.conftest import StatsFactory
from usage_stats import UsageMiddleware, UsageStats
from usage_stats.counters import FOLD_AT
from usage_stats.recorder import VISITOR
from usage_stats.routes import RouteTemplates


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


async def boom(request: Request) -> Response:
    raise RuntimeError("the app failed")


def starlette_app(stats: UsageStats, static: Path | None = None, **options: Any) -> Starlette:
    routes = [
        Route("/", ok),
        Route("/users/{user_id}", ok),
        Route("/boom", boom),
        Route("/only-post", ok, methods=["POST"]),
        Mount("/api/v1", routes=[Route("/items/{item_id:int}", ok)]),
        Mount("/orgs/{org}", routes=[Route("/repos/{repo}", ok)]),
    ]
    if static is not None:
        routes.append(Mount("/static", app=StaticFiles(directory=static)))
    app = Starlette(routes=routes)
    app.add_middleware(UsageMiddleware, stats=stats, **options)
    return app


async def test_starlette_counts_route_templates_status_and_visitor(make_stats: StatsFactory, tmp_path: Path) -> None:
    (tmp_path / "site.css").write_text("body{}")
    async with make_stats() as stats:
        app = starlette_app(stats, static=tmp_path)
        async with client(app) as c:
            for path in ("/", "/users/alice", "/users/bob", "/api/v1/items/1", "/api/v1/items/2"):
                assert (await c.get(path)).status_code == 200
            assert (await c.get("/orgs/acme/repos/widgets")).status_code == 200
            assert (await c.get("/orgs/umbrella/repos/gadgets")).status_code == 200
            assert (await c.get("/static/site.css")).text == "body{}"
        counts = await recorded(stats)
    assert counts == {
        ("page", "/"): 1,
        ("page", "/users/{user_id}"): 2,
        ("page", "/api/v1/items/{item_id}"): 2,
        ("page", "/orgs/{org}/repos/{repo}"): 2,
        ("page", "/static/{path}"): 1,
        ("status", "2xx"): 8,
        ("seen", "visitor"): 1,
    }


def fastapi_app(stats: UsageStats, **options: Any) -> FastAPI:
    app = shop_app(on_sync=lambda: stats.count("sync-work", "business"))
    app.add_middleware(UsageMiddleware, stats=stats, **options)
    return app


async def test_fastapi_templates_with_nested_routers_and_sync_endpoints(make_stats: StatsFactory) -> None:
    async with make_stats() as stats:
        async with client(fastapi_app(stats)) as c:
            assert (await c.get("/items/3")).json() == {"id": 3}
            assert (await c.get("/items/x")).status_code == 422
            for name in ("ann", "ben", "cat"):
                assert (await c.get(f"/api/v1/users/{name}")).status_code == 200
                assert (await c.get(f"/api/v1/users/{name}/sync")).status_code == 200
        counts = await recorded(stats)
    assert counts == {
        ("page", "/items/{item_id}"): 2,
        ("page", "/api/v1/users/{user_id}"): 3,
        ("page", "/api/v1/users/{user_id}/sync"): 3,
        ("business", "sync-work"): 3,
        ("status", "2xx"): 7,
        ("status", "4xx"): 1,
        ("seen", "visitor"): 1,
    }


async def test_not_found_counts_bad_request_and_the_visitor(make_stats: StatsFactory) -> None:
    async with make_stats() as stats:
        app = starlette_app(stats)
        async with client(app, "198.51.100.7") as c:
            assert (await c.get("/no/such/page")).status_code == 404
            assert (await c.get("/api/v1/items/not-a-number")).status_code == 404
        async with client(fastapi_app(stats), "203.0.113.5") as c:
            assert (await c.get("/nothing")).status_code == 404
        counts = await recorded(stats)
    assert counts == {("bad-req", "not-found"): 3, ("status", "4xx"): 3, ("seen", "visitor"): 2}


async def test_app_exception_is_counted_as_5xx_and_re_raised(make_stats: StatsFactory) -> None:
    async with make_stats() as stats:
        async with client(starlette_app(stats)) as c:
            with pytest.raises(RuntimeError, match="the app failed"):
                await c.get("/boom")
        async with client(fastapi_app(stats), raise_app_exceptions=False) as c:
            assert (await c.post("/api/v1/users/x/fail")).status_code == 500
        counts = await recorded(stats)
    assert counts == {
        ("page", "/boom"): 1,
        ("page", "/api/v1/users/{user_id}/fail"): 1,
        ("status", "5xx"): 2,
        ("seen", "visitor"): 1,
    }


async def test_bare_asgi_exception_is_the_same_object(make_stats: StatsFactory) -> None:
    error = ValueError("mine")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise error

    async with make_stats() as stats:
        with pytest.raises(ValueError, match="mine") as info:
            await UsageMiddleware(app, stats=stats)(http_scope("/x"), _receive, _discard)
        assert info.value is error
        counts = await recorded(stats)
    assert counts == {("bad-req", "not-found"): 1, ("status", "5xx"): 1, ("seen", "visitor"): 1}


async def test_head_options_and_method_not_allowed(make_stats: StatsFactory) -> None:
    async with make_stats() as stats:
        async with client(starlette_app(stats)) as c:
            head = await c.head("/users/alice")
            assert (head.status_code, head.content) == (200, b"")
            assert (await c.options("/users/alice")).status_code == 405
            assert (await c.get("/only-post")).status_code == 405
            assert (await c.post("/only-post")).status_code == 200
        counts = await recorded(stats)
    assert counts == {
        ("page", "/users/{user_id}"): 2,
        ("page", "/only-post"): 2,
        ("status", "2xx"): 2,
        ("status", "4xx"): 2,
        ("seen", "visitor"): 1,
    }


async def test_excluded_prefixes_count_nothing(make_stats: StatsFactory) -> None:
    async with make_stats() as stats:
        app = starlette_app(stats, exclude=("/users", "/api/"))
        async with client(app, "198.51.100.1") as c:
            assert (await c.get("/users/alice")).status_code == 200
            assert (await c.get("/api/v1/items/4")).status_code == 200
        async with client(app, "203.0.113.1") as c:
            assert (await c.get("/")).status_code == 200
        counts = await recorded(stats)
    assert counts == {("page", "/"): 1, ("status", "2xx"): 1, ("seen", "visitor"): 1}


async def test_a_single_string_exclude_is_a_prefix_not_characters(make_stats: StatsFactory) -> None:
    async with make_stats() as stats:
        async with client(starlette_app(stats, exclude="/users")) as c:
            await c.get("/users/a")
            await c.get("/")
        counts = await recorded(stats)
    assert counts[("page", "/")] == 1
    assert ("page", "/users/{user_id}") not in counts


async def test_event_name_and_category_callables(make_stats: StatsFactory) -> None:
    seen_status: list[int] = []

    def event_name(scope: Any, status: int) -> str | None:
        seen_status.append(status)
        return "home" if scope["path"] == "/" else None  # None keeps the template

    def category(scope: Any, status: int) -> str | None:
        return "api" if scope["path"].startswith("/api") else None

    async with make_stats() as stats:
        async with client(starlette_app(stats, event_name=event_name, category=category)) as c:
            await c.get("/")
            await c.get("/api/v1/items/1")
            await c.get("/users/x")
            await c.get("/nothing")
        counts = await recorded(stats)
    assert sorted(seen_status) == [200, 200, 200, 404]
    assert counts == {
        ("page", "home"): 1,
        ("api", "/api/v1/items/{item_id}"): 1,
        ("page", "/users/{user_id}"): 1,
        ("bad-req", "not-found"): 1,
        ("status", "2xx"): 3,
        ("status", "4xx"): 1,
        ("seen", "visitor"): 1,
    }


class HeaderAuth(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        name = conn.headers.get("x-user")
        return (AuthCredentials(["authenticated"]), SimpleUser(name)) if name else None


async def test_scope_user_from_authentication_middleware_counts_users(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str
) -> None:
    async with make_stats(user_ids="database") as stats:
        app = Starlette(routes=[Route("/users/{user_id}", ok)])
        app.add_middleware(AuthenticationMiddleware, backend=HeaderAuth())
        app.add_middleware(UsageMiddleware, stats=stats)  # outermost: sees scope["user"] after the app ran
        async with client(app, "198.51.100.20") as c:
            for name in ("alice", "bob", "alice"):
                assert (await c.get("/users/x", headers={"x-user": name})).status_code == 200
            assert (await c.get("/users/x")).status_code == 200  # anonymous: a visitor
        counts = await recorded(stats)
        keys = await db.fetch(f'SELECT category, key FROM "{schema}".seen_keys ORDER BY 1, 2')
    assert counts[("seen", "user")] == 2
    assert counts[("seen", "visitor")] == 1
    assert counts[("page", "/users/{user_id}")] == 4
    assert [(k["category"], bytes(k["key"])) for k in keys] == [
        ("user", b"alice"),
        ("user", b"bob"),
        ("visitor", b"198.51.100.0"),
    ]


async def test_user_id_callable(make_stats: StatsFactory) -> None:
    def user_id(scope: Any) -> object:
        for name, value in scope["headers"]:
            if name == b"x-account":
                return int(value)
        return None

    async with make_stats() as stats:
        async with client(starlette_app(stats, user_id=user_id)) as c:
            await c.get("/", headers={"x-account": "17"})
            await c.get("/", headers={"x-account": "17"})
            await c.get("/", headers={"x-account": "18"})
            await c.get("/")
        counts = await recorded(stats)
    assert counts[("seen", "user")] == 2
    assert counts[("seen", "visitor")] == 1


async def test_unauthenticated_or_broken_user_objects_count_a_visitor(make_stats: StatsFactory) -> None:
    class Broken:
        is_authenticated = True

        @property
        def identity(self) -> str:
            raise RuntimeError("no")

        @property
        def display_name(self) -> str:
            raise RuntimeError("no")

    class Anonymous:
        is_authenticated = False
        identity = "should-not-count"

    users = iter([Broken(), Anonymous()])

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["user"] = next(users)
        await PlainTextResponse("ok")(scope, receive, send)

    async with make_stats() as stats:
        async with client(UsageMiddleware(app, stats=stats)) as c:
            assert (await c.get("/")).text == "ok"
            assert (await c.get("/")).text == "ok"
        counts = await recorded(stats)
    assert ("seen", "user") not in counts
    assert counts[("seen", "visitor")] == 1
    assert counts[("status", "2xx")] == 2


async def test_trusted_proxy_headers_pick_the_client(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str
) -> None:
    async with make_stats(user_ids="database", trusted_proxies=("10.0.0.0/8",)) as stats:
        app = starlette_app(stats)
        async with client(app, "10.1.1.1") as c:
            await c.get("/", headers={"x-forwarded-for": "6.6.6.6, 198.51.100.77"})
            await c.get("/", headers={"x-forwarded-for": "203.0.113.9", "forwarded": "for=6.6.6.6"})
        async with client(app, "192.0.2.50") as c:  # untrusted peer: its headers are ignored
            await c.get("/", headers={"x-forwarded-for": "6.6.6.6"})
        counts = await recorded(stats)
        keys = await db.fetch(f'SELECT key FROM "{schema}".seen_keys ORDER BY key')
    assert counts[("seen", "visitor")] == 3
    assert [bytes(k["key"]) for k in keys] == [b"192.0.2.0", b"198.51.100.0", b"203.0.113.0"]


async def test_garbage_or_missing_client_counts_no_visitor(make_stats: StatsFactory) -> None:
    async with make_stats() as stats:
        mw = UsageMiddleware(_plain_ok, stats=stats)
        for client_value in (None, ("not-an-ip", 1), ("fe80::1%eth0", 1)):
            scope = http_scope("/")
            scope["client"] = client_value
            await mw(scope, _receive, _discard)
        counts = await recorded(stats)
    assert counts == {("bad-req", "not-found"): 3, ("status", "2xx"): 3}


_BROKEN_CLIENTS: list[object] = [
    ("198.51.100.7", 1),  # a visitor
    None,  # no client: no visitor
    ["198.51.100.8", 2],  # a list, not a tuple: still the same network
    ("2001:db8:1:2::9",),  # no port
    "203.0.113.5",  # a string, not a pair: no visitor
    (5, 1),  # no address: no visitor
    (),  # no visitor
    {0: "192.0.2.9"},  # a mapping, not a pair: no visitor
]


@pytest.mark.parametrize(
    ("clients", "networks"),
    [
        (_BROKEN_CLIENTS, ("198.51.100.7", "2001:db8:1:2::9")),
        # every other client a mapping whose item 0 looks like an address: the only odd shape in the list
        ([("198.51.100.7", 1), {0: "192.0.2.9"}], ("198.51.100.7",)),
    ],
    ids=["every-shape", "pairs-and-mappings"],
)
async def test_clients_of_a_broken_server_on_the_fast_path_count_as_the_slow_path_does(
    make_stats: StatsFactory, clients: list[object], networks: tuple[str, ...]
) -> None:
    """The fast path keeps the ASGI `client` pair itself and takes its address when it folds (at
    `FOLD_AT` values and on every read): every shape of client a broken server may give counts as
    reading it at once does, with addresses cut before anything else sees them."""
    requests = 3 * FOLD_AT + 5

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/items/{n}", endpoint)])
    async with make_stats() as stats:
        app.add_middleware(UsageMiddleware, stats=stats)
        handler = app.build_middleware_stack()
        buffered = 0
        for i in range(requests):
            scope = http_scope(f"/items/{i}")
            scope["client"] = clients[i % len(clients)]
            await handler(scope, _receive, _discard)
            buffered = max(buffered, stats.recorder.counters.buffered())
        pending = stats.pending
        counts = {key: n for period in pending.counts.values() for key, n in period.items()}
        seen = {key: set(values) for day in pending.seen.values() for key, values in day.items()}
    assert buffered > 0  # the fast path held requests back, so folding them was tested
    assert counts == {("page", "/items/{n}"): requests, ("status", "2xx"): requests}
    cut = stats.recorder.cut_address
    assert seen == {(VISITOR[0], "visitor"): {cut(address) for address in networks}}
    assert cut("198.51.100.7") == "198.51.100.0"


async def test_statistics_errors_never_reach_the_app(
    make_stats: StatsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    def event_name(scope: Any, status: int) -> str:
        raise KeyError("bug in the callable")

    async with make_stats() as stats:
        with caplog.at_level(logging.ERROR, logger="usage_stats"):
            async with client(starlette_app(stats, event_name=event_name)) as c:
                for _ in range(3):
                    assert (await c.get("/users/a")).text == "ok"
        counts = await recorded(stats)
    assert counts == {}  # nothing recorded for those requests...
    assert "could not record" in caplog.text  # ...and it was said in the log


async def test_skip_scope_flag_counts_nothing(make_stats: StatsFactory) -> None:
    async def skipping(request: Request) -> Response:
        request.scope["usage_stats.skip"] = True
        return PlainTextResponse("admin")

    async with make_stats() as stats:
        app = Starlette(routes=[Route("/admin", skipping), Route("/", ok)])
        app.add_middleware(UsageMiddleware, stats=stats)
        async with client(app) as c:
            assert (await c.get("/admin")).text == "admin"
            assert (await c.get("/")).text == "ok"
        counts = await recorded(stats)
    assert counts == {("page", "/"): 1, ("status", "2xx"): 1, ("seen", "visitor"): 1}


# -- non-HTTP scopes and byte-identical responses -------------------------------------------------


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _discard(message: Message) -> None:
    pass


async def _plain_ok(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("ok")(scope, receive, send)


@pytest.mark.parametrize("kind", ["websocket", "lifespan"])
async def test_websocket_and_lifespan_scopes_pass_through_untouched(make_stats: StatsFactory, kind: str) -> None:
    got: list[tuple[Any, Any, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        got.append((scope, receive, send))

    scope: dict[str, Any] = {"type": kind, "path": "/ws", "client": ("192.0.2.1", 1), "headers": []}
    before = dict(scope)

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        pass

    async with make_stats() as stats:
        await UsageMiddleware(app, stats=stats)(scope, receive, send)
        counts = await recorded(stats)
    assert got == [(scope, receive, send)]
    assert got[0][0] is scope
    assert got[0][2] is send  # not wrapped
    assert scope == before
    assert counts == {}


async def test_websocket_route_in_a_starlette_app(make_stats: StatsFactory) -> None:
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    async with make_stats() as stats:
        app = Starlette(routes=[WebSocketRoute("/ws", echo)])
        app.add_middleware(UsageMiddleware, stats=stats)
        inbox = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "hi"}]
        sent: list[Message] = []

        async def receive() -> Message:
            return inbox.pop(0) if inbox else {"type": "websocket.disconnect", "code": 1000}

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {**http_scope("/ws"), "type": "websocket", "subprotocols": []}
        await app(scope, receive, send)
        counts = await recorded(stats)
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[1]["text"] == "hi"
    assert counts == {}


def _apps(stats: UsageStats | None, static: Path) -> ASGIApp:
    async def stream(request: Request) -> Response:
        async def chunks() -> Any:
            for part in (b"one,", b"two,", b"three"):
                yield part

        return StreamingResponse(chunks(), media_type="text/csv", headers={"x-custom": "1"})

    async def json_(request: Request) -> Response:
        return JSONResponse({"a": [1, 2, 3]}, status_code=201, headers={"set-cookie": "k=v"})

    app = Starlette(
        routes=[
            Route("/stream", stream),
            Route("/json", json_, methods=["GET", "POST"]),
            Mount("/static", app=StaticFiles(directory=static)),
        ]
    )
    if stats is not None:
        app.add_middleware(UsageMiddleware, stats=stats)
    return app


async def _messages(app: ASGIApp, path: str, method: str = "GET") -> list[Message]:
    sent: list[Message] = []
    received = False

    async def receive() -> Message:
        nonlocal received
        if received:
            await anyio.sleep_forever()
        received = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(http_scope(path, method), receive, send)
    return sent


async def test_responses_are_byte_identical_with_and_without_the_middleware(
    make_stats: StatsFactory, tmp_path: Path
) -> None:
    (tmp_path / "a.txt").write_bytes(b"static bytes\x00\xff")
    cases = [("/stream", "GET"), ("/json", "POST"), ("/static/a.txt", "GET"), ("/static/none", "GET"), ("/x", "GET")]
    async with make_stats() as stats:
        with_mw = _apps(stats, tmp_path)
        without = _apps(None, tmp_path)
        for path, method in cases:
            a = await _messages(with_mw, path, method)
            b = await _messages(without, path, method)
            assert a == b, path
            assert a  # something was sent
        counts = await recorded(stats)
    assert counts[("page", "/stream")] == 1
    assert counts[("page", "/json")] == 1
    assert counts[("page", "/static/{path}")] == 2
    assert counts[("bad-req", "not-found")] == 1
    assert counts[("status", "2xx")] == 3
    assert counts[("status", "4xx")] == 2


async def test_one_router_mounted_or_included_twice_keeps_both_templates(make_stats: StatsFactory) -> None:
    shared = [Route("/items/{item_id}", ok)]
    star = Starlette(routes=[Mount("/a", routes=shared), Mount("/b", routes=shared), Route("/items/{item_id}", ok)])
    fast = FastAPI()
    router = APIRouter()

    @router.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    fast.include_router(router, prefix="/v1")
    fast.include_router(router, prefix="/v2")
    async with make_stats() as stats:
        star.add_middleware(UsageMiddleware, stats=stats)
        fast.add_middleware(UsageMiddleware, stats=stats)
        async with client(star) as c:
            for path in ("/a/items/1", "/b/items/2", "/items/3", "/a/items/4", "/b/items/5", "/items/6"):
                assert (await c.get(path)).status_code == 200
        async with client(fast) as c:
            for path in ("/v1/things/1", "/v2/things/2", "/v1/things/3", "/v2/things/4"):
                assert (await c.get(path)).status_code == 200
        counts = await recorded(stats)
    assert counts == {
        ("page", "/a/items/{item_id}"): 2,
        ("page", "/b/items/{item_id}"): 2,
        ("page", "/items/{item_id}"): 2,
        ("page", "/v1/things/{thing_id}"): 2,
        ("page", "/v2/things/{thing_id}"): 2,
        ("status", "2xx"): 10,
        ("seen", "visitor"): 1,
    }


async def test_the_same_request_twice_counts_twice_on_the_fast_path(make_stats: StatsFactory) -> None:
    # Repeated requests take a cached path in the middleware: users, visitors, statuses and
    # callables must give the same counts there as on the first request.
    async with make_stats() as stats:
        app = Starlette(routes=[Route("/users/{user_id}", ok), Route("/boom", boom)])
        app.add_middleware(AuthenticationMiddleware, backend=HeaderAuth())
        app.add_middleware(UsageMiddleware, stats=stats)
        async with client(app, "198.51.100.1", raise_app_exceptions=False) as c:
            for i in range(3):
                await c.get("/users/x", headers={"x-user": f"user{i % 2}"})
                await c.get("/users/x")
                await c.get("/boom")
                await c.head("/users/x")
        async with client(app, "203.0.113.1") as c:
            await c.get("/users/x")
            await c.get("/users/x")
        counts = await recorded(stats)
    assert counts == {
        ("page", "/users/{user_id}"): 11,
        ("page", "/boom"): 3,
        ("status", "2xx"): 11,
        ("status", "5xx"): 3,
        ("seen", "user"): 2,
        ("seen", "visitor"): 2,
    }


async def test_exclude_applies_to_app_paths_behind_a_root_path(make_stats: StatsFactory) -> None:
    # uvicorn --root-path /shop: the path arrives with the prefix, the app's routes are without it.
    async with make_stats() as stats:
        mw = UsageMiddleware(
            Starlette(routes=[Route("/health", ok), Route("/", ok)]), stats=stats, exclude=("/health",)
        )
        for path in ("/shop/health", "/shop/", "/shop/health/deep"):
            scope = http_scope(path)
            scope["root_path"] = "/shop"
            await mw(scope, _receive, _discard)
        counts = await recorded(stats)
    assert counts == {("page", "/"): 1, ("status", "2xx"): 1, ("seen", "visitor"): 1}


async def test_a_user_without_identity_counts_by_display_name(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str
) -> None:
    class NamedUser(BaseUser):  # BaseUser.identity raises NotImplementedError
        def __init__(self, name: str) -> None:
            self.name = name

        @property
        def is_authenticated(self) -> bool:
            return True

        @property
        def display_name(self) -> str:
            return self.name

    class NamedAuth(AuthenticationBackend):
        async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
            name = conn.headers.get("x-user")
            return (AuthCredentials(["authenticated"]), NamedUser(name)) if name else None

    async with make_stats(user_ids="database") as stats:
        app = Starlette(routes=[Route("/", ok)])
        app.add_middleware(AuthenticationMiddleware, backend=NamedAuth())
        app.add_middleware(UsageMiddleware, stats=stats)
        async with client(app) as c:
            for name in ("carol", "dave", "carol"):
                await c.get("/", headers={"x-user": name})
        counts = await recorded(stats)
        keys = await db.fetch(f'SELECT key FROM "{schema}".seen_keys ORDER BY key')
    assert counts == {("page", "/"): 3, ("status", "2xx"): 3, ("seen", "user"): 2}
    assert [bytes(k["key"]) for k in keys] == [b"carol", b"dave"]


async def test_starlette_not_found_takes_the_fast_path(
    make_stats: StatsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 404 in a Starlette app leaves no endpoint and no other framework's template: nothing to look up.
    resolved: list[str] = []
    resolve = RouteTemplates.__call__

    def counting(self: RouteTemplates, scope: Any, root_path: str) -> tuple[str | None, bool]:
        resolved.append(scope["path"])
        return resolve(self, scope, root_path)

    monkeypatch.setattr(RouteTemplates, "__call__", counting)
    async with make_stats() as stats:
        app = starlette_app(stats)
        async with client(app, "198.51.100.7") as c:
            for i in range(5):
                assert (await c.get(f"/wp-admin/{i}")).status_code == 404
            assert (await c.get("/")).status_code == 200
        counts = await recorded(stats)
    assert resolved == ["/"]  # the 404s never resolved a template
    assert counts == {
        ("bad-req", "not-found"): 5,
        ("page", "/"): 1,
        ("status", "4xx"): 5,
        ("status", "2xx"): 1,
        ("seen", "visitor"): 1,
    }


class _OddUser(BaseUser):
    """A user class whose answers vary with `mode`: the fast path must read them as `_user` does."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    @property
    def is_authenticated(self) -> bool:
        if self.mode == "raises":
            raise RuntimeError("broken")
        return self.mode != "anonymous"

    @property
    def identity(self) -> Any:
        if self.mode == "no-identity":
            raise NotImplementedError
        return {"empty": "", "number": 42}.get(self.mode, f"id-{self.mode}")

    @property
    def display_name(self) -> str:
        return f"name-{self.mode}"


async def test_repeated_users_count_as_the_first_one(make_stats: StatsFactory) -> None:
    stats = make_stats()  # not started: what is pending is what was recorded
    modes = ["alice", "empty", "number", "no-identity", "anonymous", "raises"]
    app = UsageMiddleware(Starlette(routes=[Route("/", ok)]), stats=stats)
    for _ in range(3):  # the first request of a class takes the general path, the next ones the fast path
        for mode in modes:
            scope = http_scope("/")
            scope["user"] = _OddUser(mode)
            await app(scope, _receive, _discard)
    seen = {key: set(values) for day in stats.pending.seen.values() for key, values in day.items()}
    assert seen[("u", "user")] == {"id-alice", "name-empty", "42", "name-no-identity"}
    assert seen[("v", "visitor")] == {"192.0.2.0"}  # anonymous and broken users count as visitors
    assert stats.pending.total_counts == 2 * 3 * len(modes)
