"""`UsageMiddleware` around a Quart app with `usage_stats.quart.install`, asserting on the counts that reach
PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import httpx
import quart
from quart import Blueprint, Quart, Response
from starlette.types import ASGIApp

from example_app.quart_app import create_app

# Quart's `g` and `request` are read through the module: pytest's collection would touch the proxies.
from tests.apps import client as asgi_client
from tests.apps import recorded, responses
from tests.conftest import StatsFactory
from usage_stats import UsageConfig, UsageMiddleware, UsageStats
from usage_stats.quart import install


class BoomError(Exception):
    pass


def quart_app(*, propagate: bool = False) -> Quart:
    app = Quart(__name__)
    app.config["PROPAGATE_EXCEPTIONS"] = propagate

    @app.before_request
    async def sign_in() -> None:
        quart.g.account = quart.request.headers.get("x-account")

    @app.before_request
    async def refuse_banned() -> Response | None:  # a hook that answers: the route is still known
        return Response("banned", status=403) if quart.request.headers.get("x-banned") else None

    items = Blueprint("items", __name__, url_prefix="/items")

    @items.route("/<int:item_id>")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @items.route("/<int:item_id>", methods=["POST"])
    async def update(item_id: int) -> str:
        return "updated"

    shop = Blueprint("shop", __name__, url_prefix="/shop")
    orders = Blueprint("orders", __name__, url_prefix="/orders")

    @orders.route("/<uuid:order>/lines/<path:rest>")
    async def line(order: Any, rest: str) -> str:
        return rest

    shop.register_blueprint(orders)
    api = Blueprint("api", __name__, url_prefix="/api/v1")
    api.register_blueprint(items)
    api.register_blueprint(shop)
    app.register_blueprint(api)

    @app.route("/boom")
    async def boom() -> str:
        raise BoomError("the view failed")

    @app.route("/health")
    async def health() -> str:
        return "ok"

    install(app, user_id=lambda: quart.g.get("account"))
    return app


def client(app: Quart) -> httpx.AsyncClient:
    return asgi_client(cast("ASGIApp", app))  # Quart types its ASGI interface its own way


def wrapped(stats: UsageStats, **options: Any) -> Quart:
    app = quart_app(**options)
    app.asgi_app = UsageMiddleware(app.asgi_app, stats=stats, exclude=("/health",))  # type: ignore[assignment]
    return app


ORDER = "7f8e4c0a-1b2c-4d5e-8f90-a1b2c3d4e5f6"


async def test_templates_of_nested_blueprints(make_stats: StatsFactory) -> None:
    async with make_stats() as stats:
        async with client(wrapped(stats)) as c:
            assert (await c.get("/api/v1/items/3")).json() == {"id": 3}
            assert (await c.get("/api/v1/items/4")).json() == {"id": 4}
            assert (await c.get(f"/api/v1/shop/orders/{ORDER}/lines/a/b")).text == "a/b"
            assert (await c.get("/api/v1/items/5", headers={"x-banned": "1"})).status_code == 403
        counts = await recorded(stats)
    assert counts == {
        ("page", "/api/v1/items/{item_id}"): 3,
        ("page", "/api/v1/shop/orders/{order}/lines/{rest}"): 1,
        ("status", "2xx"): 3,
        ("status", "4xx"): 1,
        ("seen", "visitor"): 1,
    }


async def test_not_found_method_not_allowed_and_a_500(make_stats: StatsFactory) -> None:
    async with make_stats() as stats:
        async with client(wrapped(stats)) as c:
            assert (await c.get("/nothing")).status_code == 404
            assert (await c.get("/api/v1/items/x")).status_code == 404
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


async def test_a_propagated_exception_is_counted_as_5xx_and_re_raised_unchanged(make_stats: StatsFactory) -> None:
    async def raised(app: Quart) -> Exception:
        async with client(app) as c:
            try:
                await c.get("/boom")
            except Exception as exc:  # Quart 0.23 raises it inside an ExceptionGroup (its task group)
                return exc
        raise AssertionError("the exception did not propagate")

    async with make_stats() as stats:
        bare = await raised(quart_app(propagate=True))
        wrapped_error = await raised(wrapped(stats, propagate=True))
        counts = await recorded(stats)
    assert counts == {("page", "/boom"): 1, ("status", "5xx"): 1, ("seen", "visitor"): 1}
    assert type(wrapped_error) is type(bare)
    leaves = [wrapped_error]
    while isinstance(leaves[0], ExceptionGroup):
        leaves = list(leaves[0].exceptions)
    assert [(type(e), str(e)) for e in leaves] == [(BoomError, "the view failed")]


async def test_responses_are_byte_identical(make_stats: StatsFactory) -> None:
    sent = [
        ("GET", "/api/v1/items/3"),
        ("POST", "/api/v1/items/3"),
        ("DELETE", "/api/v1/items/3"),
        ("GET", "/nothing"),
        ("GET", "/boom"),
        ("GET", "/health"),
    ]

    async with make_stats() as stats:
        # the date header may tick between the two runs
        bare = await responses(quart_app(), sent, {"x-account": "9"}, ignore=("date",))
        with_stats = await responses(wrapped(stats), sent, {"x-account": "9"}, ignore=("date",))
        counts = await recorded(stats)
    assert bare == with_stats
    assert counts == {
        ("page", "/api/v1/items/{item_id}"): 3,
        ("page", "/boom"): 1,
        ("bad-req", "not-found"): 1,
        ("status", "2xx"): 2,
        ("status", "4xx"): 2,
        ("status", "5xx"): 1,
        ("seen", "user"): 1,
    }


async def test_excluded_paths_and_signed_in_users(make_stats: StatsFactory) -> None:
    async with make_stats() as stats:
        async with client(wrapped(stats)) as c:
            assert (await c.get("/health")).text == "ok"
            for account in ("1", "2", "1"):
                assert (await c.get("/api/v1/items/5", headers={"x-account": account})).status_code == 200
            assert (await c.get("/api/v1/items/5")).status_code == 200
        counts = await recorded(stats)
    assert counts == {
        ("page", "/api/v1/items/{item_id}"): 4,
        ("status", "2xx"): 4,
        ("seen", "user"): 2,
        ("seen", "visitor"): 1,
    }


async def test_the_example_app_starts_and_stops_the_stats(
    make_config: Callable[..., UsageConfig], make_stats: StatsFactory
) -> None:
    app = create_app(make_config())
    async with app.test_app() as served:  # runs before_serving and after_serving
        c = served.test_client()
        assert (await c.get("/api/items/2")).status_code == 200
        assert (await c.get("/health")).status_code == 200
    async with make_stats() as reader:  # after_serving stopped the stats: the final flush saved the request
        counts = await recorded(reader)
    assert counts[("page", "/api/items/{item_id}")] == 1
    assert counts[("status", "2xx")] == 1
