"""The stored event of every request a route or mount served is its full path template, mount and router
prefixes included, on every supported Starlette and FastAPI version (`.ci/run` runs this file on each):
plain Starlette apps, FastAPI's own routes, mounted apps, and mounts with path parameters, whose raw
values must never reach the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.datastructures import URLPath
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Host, Match, Mount, NoMatchFound, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.apps import Counts, client, http_scope, recorded, shop_app
from tests.conftest import StatsFactory
from usage_stats import UsageMiddleware

SECRET = "alice@example.com"  # a raw path value that must never be stored


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


async def other(request: Request) -> Response:
    return PlainTextResponse("other")


async def metrics(scope: Scope, receive: Receive, send: Send) -> None:
    """A raw ASGI app, as `prometheus_client.make_asgi_app()` mounts one."""
    await PlainTextResponse("# metrics")(scope, receive, send)


class OtherFramework:
    """Another framework's ASGI app: routes of its own, which are not Starlette's."""

    def __init__(self) -> None:
        self.routes = ["/a", "/b/{id}"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("other framework")(scope, receive, send)


async def served(app: ASGIApp, requests: list[tuple[str, str, int]], host: str = "testserver") -> None:
    async with client(app) as c:
        for method, path, status in requests:
            response = await c.request(method, path, headers={"host": host})
            assert response.status_code == status, (method, path, response.status_code)


def pages(counts: Counts) -> Counts:
    """The events of the requests: categories `page` and `bad-req`."""
    return {key: value for key, value in counts.items() if key[0] in ("page", "bad-req")}


async def stored_text(db: asyncpg.Connection, schema: str) -> str:
    """Every row of every table in `schema`, as text."""
    tables = await db.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema)
    texts: list[str] = []
    for t in tables:
        rows = await db.fetch(f'SELECT t::text AS row FROM "{schema}"."{t["table_name"]}" t')
        texts.extend(r["row"] for r in rows)
    return "\n".join(texts)


def starlette_app(static: Path) -> Starlette:
    (static / "app.css").write_text("body{}")
    tenant = Starlette(routes=[Route("/items/{id}", ok), Mount("/deep/{level}", routes=[Route("/x/{y}", other)])])
    sub = Starlette(routes=[Route("/ping", ok), Mount("/deep", routes=[Route("/{x}/leaf", ok)])])
    return Starlette(
        routes=[
            Route("/", ok),
            Route("/users/{user_id}", ok),
            Route("/files/{rest:path}", other),
            Route("/only-post", ok, methods=["POST"]),
            Mount("/api/v1", app=Router(routes=[Route("/items/{item_id:int}", ok), Route("/", other)])),
            Mount("/orgs/{org}", routes=[Route("/repos/{repo}", ok)]),
            Mount("/tenants/{tenant}", app=tenant),
            Mount("/sub", app=sub),
            Mount("/static", app=StaticFiles(directory=static)),
            Mount("/metrics", app=metrics),
            Mount("/other", app=OtherFramework()),
            Host("api.example.com", app=Router(routes=[Route("/v/{n}", ok)])),
        ]
    )


async def test_plain_starlette_routes_mounts_and_mounted_apps(make_stats: StatsFactory, tmp_path: Path) -> None:
    async with make_stats() as stats:
        app = starlette_app(tmp_path)
        app.add_middleware(UsageMiddleware, stats=stats)
        await served(
            app,
            [
                ("GET", "/", 200),
                ("GET", "/users/alice", 200),
                ("GET", "/users/bob", 200),
                ("GET", "/files/a/b/c.txt", 200),
                ("POST", "/only-post", 200),
                ("GET", "/only-post", 405),  # counted under the route it hit
                ("GET", "/api/v1/items/42", 200),
                ("GET", "/api/v1/", 200),
                ("GET", "/orgs/acme/repos/widgets", 200),
                ("GET", f"/tenants/{SECRET}/items/7", 200),
                ("GET", "/tenants/bob/items/8", 200),
                ("GET", f"/tenants/{SECRET}/deep/3/x/{SECRET}", 200),
                ("GET", "/sub/ping", 200),
                ("GET", "/sub/deep/abc/leaf", 200),
                ("GET", "/static/app.css", 200),
                ("GET", "/static/missing.css", 404),  # StaticFiles served it: its own 404
                ("GET", "/metrics/", 200),
                ("GET", "/metrics/anything", 200),
                ("GET", "/other/b/1", 200),
                ("GET", "/nowhere", 404),
                ("GET", "/api/v1/items/not-an-int", 404),  # inside a mount, but no route matched there
                ("GET", f"/tenants/{SECRET}/nothing", 404),
                ("GET", "/sub/nothing", 404),
            ],
        )
        await served(app, [("GET", "/v/1", 200), ("GET", "/v/2", 200)], host="api.example.com")
        counts = await recorded(stats)
    assert pages(counts) == {
        ("page", "/"): 1,
        ("page", "/users/{user_id}"): 2,
        ("page", "/files/{rest}"): 1,
        ("page", "/only-post"): 2,
        ("page", "/api/v1/items/{item_id}"): 1,
        ("page", "/api/v1/"): 1,
        ("page", "/orgs/{org}/repos/{repo}"): 1,
        ("page", "/tenants/{tenant}/items/{id}"): 2,
        ("page", "/tenants/{tenant}/deep/{level}/x/{y}"): 1,
        ("page", "/sub/ping"): 1,
        ("page", "/sub/deep/{x}/leaf"): 1,
        ("page", "/static/{path}"): 2,
        ("page", "/metrics/{path}"): 2,
        ("page", "/other/{path}"): 1,
        ("page", "/v/{n}"): 2,
        ("bad-req", "not-found"): 4,
    }


async def test_parameterised_mounts_never_store_raw_values(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str
) -> None:
    tenant = Starlette(routes=[Route("/items/{id}", ok)])
    org = FastAPI()

    @org.get("/items/{item_id}")
    async def org_item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    star = Starlette(routes=[Mount("/tenants/{tenant}", app=tenant)])
    fast = FastAPI()
    fast.mount("/orgs/{org}", org)
    async with make_stats() as stats:
        star.add_middleware(UsageMiddleware, stats=stats)
        fast.add_middleware(UsageMiddleware, stats=stats)
        requests = [("GET", f"/tenants/{SECRET}/items/{SECRET}", 200), ("GET", f"/orgs/{SECRET}/items/1", 200)]
        await served(star, requests[:1])
        await served(fast, requests[1:])
        await served(fast, [("GET", f"/orgs/{SECRET}/openapi.json", 200), ("GET", f"/orgs/{SECRET}/none", 404)])
        counts = await recorded(stats)
        stored = await stored_text(db, schema)
    assert pages(counts) == {
        ("page", "/tenants/{tenant}/items/{id}"): 1,
        ("page", "/orgs/{org}/items/{item_id}"): 1,
        ("page", "/orgs/{org}/openapi.json"): 1,
        ("bad-req", "not-found"): 1,
    }
    assert "/orgs/{org}/items/{item_id}" in stored  # the scan below reads the stored events
    assert SECRET not in stored
    assert "alice" not in stored


def fastapi_app(static: Path) -> FastAPI:
    (static / "app.css").write_text("body{}")
    app = shop_app()  # /items/{item_id}, /api/v1/users/{user_id}(/sync), /legacy (a mounted FastAPI)
    users = APIRouter(prefix="/users")

    @users.get("/{user_id}")
    async def user(user_id: str) -> dict[str, str]:
        return {"id": user_id}

    users.add_api_route("/{user_id}/alias", user, methods=["GET"])
    app.include_router(users, prefix="/api")
    org = FastAPI()

    @org.get("/items/{item_id}")
    async def org_item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    app.mount("/orgs/{org}", org)
    app.mount("/static", StaticFiles(directory=static))
    app.mount("/metrics", metrics)
    return app


async def test_fastapi_routes_docs_and_mounted_apps(make_stats: StatsFactory, tmp_path: Path) -> None:
    async with make_stats() as stats:
        app = fastapi_app(tmp_path)
        app.add_middleware(UsageMiddleware, stats=stats)
        await served(
            app,
            [
                ("GET", "/items/3", 200),
                ("GET", "/items/abc", 422),  # matched a route, the value was invalid
                ("POST", "/items/3", 405),
                ("GET", "/api/v1/users/bob", 200),
                ("GET", "/api/v1/users/bob/sync", 200),
                ("GET", "/api/users/ann", 200),
                ("GET", "/api/users/ann/alias", 200),
                ("GET", "/openapi.json", 200),
                ("GET", "/docs", 200),
                ("GET", "/docs/oauth2-redirect", 200),
                ("GET", "/redoc", 200),
                ("GET", "/legacy/things/x", 200),
                ("GET", "/legacy/openapi.json", 200),
                ("GET", "/legacy/docs", 200),
                ("GET", "/orgs/acme/items/5", 200),
                ("GET", "/orgs/umbrella/items/6", 200),
                ("GET", "/static/app.css", 200),
                ("GET", "/metrics/", 200),
                ("GET", "/nothing", 404),
                ("GET", "/legacy/nothing", 404),
                ("GET", "/orgs/acme/nothing", 404),
            ],
        )
        counts = await recorded(stats)
    assert pages(counts) == {
        ("page", "/items/{item_id}"): 3,
        ("page", "/api/v1/users/{user_id}"): 1,
        ("page", "/api/v1/users/{user_id}/sync"): 1,
        ("page", "/api/users/{user_id}"): 1,
        ("page", "/api/users/{user_id}/alias"): 1,
        ("page", "/openapi.json"): 1,
        ("page", "/docs"): 1,
        ("page", "/docs/oauth2-redirect"): 1,
        ("page", "/redoc"): 1,
        ("page", "/legacy/things/{thing}"): 1,
        ("page", "/legacy/openapi.json"): 1,
        ("page", "/legacy/docs"): 1,
        ("page", "/orgs/{org}/items/{item_id}"): 2,
        ("page", "/static/{path}"): 1,
        ("page", "/metrics/{path}"): 1,
        ("bad-req", "not-found"): 3,
    }


async def test_a_fastapi_app_mounted_in_a_starlette_app(make_stats: StatsFactory) -> None:
    # Starlette 1.7+ leaves the mount as the route while FastAPI's own routes run below it.
    sub = shop_app()
    app = Starlette(routes=[Route("/", ok), Mount("/shop/{shop}", app=sub)])
    async with make_stats() as stats:
        app.add_middleware(UsageMiddleware, stats=stats)
        paths = ["/shop/a/openapi.json", "/shop/b/docs", "/shop/c/items/1", "/shop/d/legacy/things/x", "/"]
        await served(app, [("GET", p, 200) for p in paths * 3] + [("GET", "/shop/a/nothing", 404)])
        counts = await recorded(stats)
    assert pages(counts) == {
        ("page", "/shop/{shop}/openapi.json"): 3,
        ("page", "/shop/{shop}/docs"): 3,
        ("page", "/shop/{shop}/items/{item_id}"): 3,
        ("page", "/shop/{shop}/legacy/things/{thing}"): 3,
        ("page", "/"): 3,
        ("bad-req", "not-found"): 1,
    }


async def test_the_same_endpoint_on_several_routes_and_mounts(make_stats: StatsFactory) -> None:
    # Starlette before 1.7 leaves only the endpoint in the scope: one function behind several routes,
    # and one router mounted twice, are told apart by the path.
    shared = Router(routes=[Route("/items/{item_id}", ok), Route("/other/{n}", ok)])
    app = Starlette(
        routes=[
            Route("/a/{x}", ok),
            Route("/b/{x}", ok, methods=["POST"]),
            Route("/b/{x}", other, methods=["GET"]),
            Mount("/v1", app=shared),
            Mount("/v2/{tenant}", app=shared),
        ]
    )
    async with make_stats() as stats:
        app.add_middleware(UsageMiddleware, stats=stats)
        paths = ["/a/1", "/v1/items/1", f"/v2/{SECRET}/items/2", "/v1/other/3", f"/v2/{SECRET}/other/4"]
        await served(app, [("GET", p, 200) for p in paths * 2] + [("POST", "/b/1", 200), ("GET", "/b/2", 200)])
        counts = await recorded(stats)
    assert pages(counts) == {
        ("page", "/a/{x}"): 2,
        ("page", "/b/{x}"): 2,
        ("page", "/v1/items/{item_id}"): 2,
        ("page", "/v2/{tenant}/items/{item_id}"): 2,
        ("page", "/v1/other/{n}"): 2,
        ("page", "/v2/{tenant}/other/{n}"): 2,
    }


class Passthrough(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        return await call_next(request)


async def test_the_middleware_wrapping_the_app_or_inside_other_middleware(make_stats: StatsFactory) -> None:
    def build() -> Starlette:
        inner = Starlette(routes=[Route("/items/{id}", ok)])
        inner.add_middleware(Passthrough)  # a mounted app with middleware of its own
        return Starlette(routes=[Route("/users/{user_id}", ok), Mount("/shop/{shop}", app=inner)])

    async with make_stats() as stats:
        outside = UsageMiddleware(build(), stats=stats)  # wraps the whole app
        wrapped = build()
        wrapped.add_middleware(UsageMiddleware, stats=stats)
        wrapped.add_middleware(Passthrough)  # outside ours
        for app in (outside, wrapped):
            await served(app, [("GET", "/users/u", 200), ("GET", f"/shop/{SECRET}/items/9", 200)])
        counts = await recorded(stats)
    assert pages(counts) == {("page", "/users/{user_id}"): 2, ("page", "/shop/{shop}/items/{id}"): 2}


class Unreadable(BaseRoute):
    """A third-party route whose attributes raise when read: it never matches."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("never matched")


async def test_a_route_that_cannot_be_read_does_not_stop_the_others(make_stats: StatsFactory) -> None:
    app = Starlette(routes=[Unreadable(), Route("/items/{id}", ok), Mount("/m/{x}", routes=[Unreadable()])])
    async with make_stats() as stats:
        app.add_middleware(UsageMiddleware, stats=stats)
        await served(app, [("GET", "/items/1", 200), ("GET", "/m/1/y", 404), ("GET", "/items/2", 200)])
        counts = await recorded(stats)
    assert pages(counts) == {("page", "/items/{id}"): 2, ("bad-req", "not-found"): 1}
    assert counts[("status", "2xx")] == 2


async def test_routes_added_after_the_first_request(make_stats: StatsFactory) -> None:
    # A new endpoint makes the route tree be indexed again (one already served keeps its first place).
    async def added(request: Request) -> Response:
        return PlainTextResponse("added")

    async with make_stats() as stats:
        app = Starlette(routes=[Route("/first/{n}", ok)])
        app.add_middleware(UsageMiddleware, stats=stats)
        await served(app, [("GET", "/first/1", 200), ("GET", "/later/1", 404)])
        app.add_route("/later/{n}", other)
        app.mount("/added/{tenant}", Router(routes=[Route("/x", added)]))
        await served(app, [("GET", "/later/2", 200), ("GET", f"/added/{SECRET}/x", 200), ("GET", "/first/2", 200)])
        counts = await recorded(stats)
    assert pages(counts) == {
        ("page", "/first/{n}"): 2,
        ("page", "/later/{n}"): 1,
        ("page", "/added/{tenant}/x"): 1,
        ("bad-req", "not-found"): 1,
    }


async def test_an_outer_root_path_is_not_part_of_the_template(make_stats: StatsFactory) -> None:
    # Behind a proxy that strips /prefix (uvicorn --root-path /prefix), the paths arrive with it.
    app = Starlette(
        routes=[Route("/users/{user_id}", ok), Mount("/api/{v}", routes=[Route("/x/{y}", ok), Route("/z/{y}", ok)])]
    )

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    async with make_stats() as stats:
        app.add_middleware(UsageMiddleware, stats=stats)
        for target in (app, UsageMiddleware(shop_app(), stats=stats)):
            for path in ("/prefix/users/7", "/prefix/api/1/x/1", "/prefix/api/2/z/2", "/prefix/items/3"):
                await target(http_scope(path, root_path="/prefix"), receive, send)
        counts = await recorded(stats)
    assert pages(counts) == {
        ("page", "/users/{user_id}"): 1,
        ("page", "/api/{v}/x/{y}"): 1,
        ("page", "/api/{v}/z/{y}"): 1,
        ("page", "/items/{item_id}"): 1,
        ("bad-req", "not-found"): 4,
    }
