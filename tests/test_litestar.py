"""`UsageMiddleware` around a Litestar app, asserting on the counts that reach PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from litestar import Controller, Litestar, Router, asgi, get, post
from litestar.connection import ASGIConnection
from litestar.exceptions import LitestarException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult, DefineMiddleware
from litestar.params import FromPath
from litestar.testing import AsyncTestClient
from litestar.types import HTTPResponseBodyEvent, Receive, Scope, Send

from example_app.litestar_app import create_app
from tests.apps import client, recorded, responses
from tests.conftest import StatsFactory
from usage_stats import UsageConfig, UsageMiddleware, UsageStats


class Account:
    """A Litestar app's own user model: no `is_authenticated`, an `id`."""

    def __init__(self, id: int) -> None:
        self.id = id


class TokenAuth(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        token = connection.headers.get("x-account")
        return AuthenticationResult(user=None if token is None else Account(int(token)), auth=token)


@get("/{item_id:int}")
async def item(item_id: FromPath[int]) -> dict[str, int]:
    return {"id": item_id}


@post("/{item_id:int}")
async def update(item_id: FromPath[int]) -> None:
    return None


class Users(Controller):
    path = "/users"

    @get("/{name:str}/profile")
    async def profile(self, name: FromPath[str]) -> str:
        return name


@get("/boom")
async def boom() -> None:
    raise RuntimeError("the app failed")


class StreamFailed(Exception):
    pass


@asgi("/stream-fails", copy_scope=True)
async def stream_fails(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    raise StreamFailed("after the response started")


@asgi("/files", is_mount=True, copy_scope=True)
async def files(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    body: HTTPResponseBodyEvent = {"type": "http.response.body", "body": b"file", "more_body": False}
    await send(body)


@get("/health")
async def health() -> str:
    return "ok"


def litestar_app(**options: Any) -> Litestar:
    items = Router("/items", route_handlers=[item, update])
    api = Router("/api/v1", route_handlers=[items, Users])
    return Litestar(
        [api, boom, stream_fails, files, health],
        middleware=[DefineMiddleware(TokenAuth, exclude="health")],
        **options,
    )


async def test_templates_of_nested_routers_controllers_and_mounts(make_stats: StatsFactory) -> None:
    async with make_stats() as stats:
        app = UsageMiddleware(litestar_app(), stats=stats)
        async with client(app) as c:
            assert (await c.get("/api/v1/items/3")).json() == {"id": 3}
            assert (await c.get("/api/v1/items/4")).json() == {"id": 4}
            assert (await c.get("/api/v1/users/ann/profile")).text == "ann"
            assert (await c.get("/files/a/b.txt")).text == "file"
        counts = await recorded(stats)
    assert counts == {
        ("page", "/api/v1/items/{item_id}"): 2,
        ("page", "/api/v1/users/{name}/profile"): 1,
        ("page", "/files/{path}"): 1,
        ("status", "2xx"): 4,
        ("seen", "visitor"): 1,
    }


async def test_not_found_method_not_allowed_and_errors(make_stats: StatsFactory) -> None:
    async with make_stats() as stats:
        app = UsageMiddleware(litestar_app(), stats=stats)
        async with client(app) as c:
            assert (await c.get("/nothing/here")).status_code == 404
            assert (await c.get("/api/v1/items/not-a-number")).status_code == 404
            assert (await c.delete("/api/v1/items/3")).status_code == 405
            assert (await c.get("/boom")).status_code == 500
        counts = await recorded(stats)
    assert counts == {
        ("bad-req", "not-found"): 2,
        ("page", "/api/v1/items/{item_id}"): 1,
        ("page", "/boom"): 1,
        ("status", "4xx"): 3,
        ("status", "5xx"): 1,
        ("seen", "visitor"): 1,
    }


async def test_an_exception_is_counted_as_5xx_and_re_raised_unchanged(make_stats: StatsFactory) -> None:
    raised: list[BaseException] = []

    async def catch(app: Any, wrapped: Any) -> None:
        async with client(wrapped) as c:
            with pytest.raises(LitestarException) as info:
                await c.get("/stream-fails")
        raised.append(info.value)

    async with make_stats() as stats:
        bare = litestar_app()
        await catch(bare, bare)
        wrapped = litestar_app()
        await catch(wrapped, UsageMiddleware(wrapped, stats=stats))
        counts = await recorded(stats)
    assert counts == {("page", "/stream-fails"): 1, ("status", "5xx"): 1, ("seen", "visitor"): 1}
    bare_error, wrapped_error = raised
    assert type(bare_error) is type(wrapped_error)
    assert str(bare_error) == str(wrapped_error)
    causes = []
    cause: BaseException | None = wrapped_error
    while cause is not None:
        causes.append(type(cause))
        cause = cause.__cause__
    assert StreamFailed in causes


async def test_responses_are_byte_identical(make_stats: StatsFactory) -> None:
    sent = [
        ("GET", "/api/v1/items/3"),
        ("GET", "/api/v1/users/ann/profile"),
        ("GET", "/files/x"),
        ("GET", "/nothing"),
        ("DELETE", "/api/v1/items/3"),
        ("GET", "/boom"),
    ]

    async with make_stats() as stats:
        app = litestar_app()  # one app: Litestar orders a 405's `allow` header differently per instance
        bare = await responses(app, sent, {"x-account": "7"})
        wrapped = await responses(UsageMiddleware(app, stats=stats), sent, {"x-account": "7"})
        counts = await recorded(stats)
    assert bare == wrapped
    assert counts == {
        ("page", "/api/v1/items/{item_id}"): 2,
        ("page", "/api/v1/users/{name}/profile"): 1,
        ("page", "/files/{path}"): 1,
        ("page", "/boom"): 1,
        ("bad-req", "not-found"): 1,
        ("status", "2xx"): 3,
        ("status", "4xx"): 2,
        ("status", "5xx"): 1,
        ("seen", "user"): 1,
        ("seen", "visitor"): 1,  # no route, so Litestar's authentication middleware did not run
    }


async def test_excluded_paths_and_signed_in_users(make_stats: StatsFactory) -> None:
    async with make_stats() as stats:
        app = UsageMiddleware(litestar_app(), stats=stats, exclude=("/health",))
        async with client(app) as c:
            assert (await c.get("/health")).text == "ok"
            for account in ("1", "2", "1"):
                r = await c.get("/api/v1/items/5", headers={"x-account": account})
                assert r.status_code == 200
            assert (await c.get("/api/v1/items/5")).status_code == 200
        counts = await recorded(stats)
    assert counts == {
        ("page", "/api/v1/items/{item_id}"): 4,
        ("status", "2xx"): 4,
        ("seen", "user"): 2,
        ("seen", "visitor"): 1,
    }


async def test_the_app_lifespan_starts_and_stops_the_stats(make_stats: StatsFactory) -> None:
    stats: UsageStats = make_stats()
    app = litestar_app(lifespan=[stats.lifespan])
    async with AsyncTestClient(UsageMiddleware(app, stats=stats)) as c:  # type: ignore[type-var]
        assert (await c.get("/api/v1/items/1")).status_code == 200
    # stopped by the lifespan: its final flush saved the request
    async with make_stats() as reader:
        table = await reader.table("day")
    counts = {(r.category, r.event): r.value for p in table.periods for r in p.rows}
    assert counts[("page", "/api/v1/items/{item_id}")] == 1


async def test_the_example_app(make_config: Callable[..., UsageConfig], make_stats: StatsFactory) -> None:
    app = create_app(make_config())
    async with AsyncTestClient(app) as c:  # type: ignore[type-var]
        assert (await c.get("/api/items/2")).json() == {"id": 2}
        assert (await c.get("/health")).text == "ok"
    async with make_stats() as reader:
        counts = await recorded(reader)
    # Litestar's test client's address is "testclient", not an IP: no visitor
    assert counts == {("page", "/api/items/{item_id}"): 1, ("status", "2xx"): 1}
