"""`UsageMiddleware` around Django's ASGI application with `usage_stats.django.RouteMiddleware`, asserting
on the counts that reach PostgreSQL."""

from __future__ import annotations

import gc
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import django
import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.urls import include, path, re_path

from tests.apps import client, recorded, responses
from tests.conftest import StatsFactory
from usage_stats import UsageMiddleware
from usage_stats.django import Lifespan

if not settings.configured:
    settings.configure(
        SECRET_KEY="usage-stats-tests",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[f"{__name__}.HeaderAuth", "usage_stats.django.RouteMiddleware"],
        INSTALLED_APPS=[],
        USE_TZ=True,
    )
    django.setup()

from django.core.asgi import get_asgi_application


class Account:
    """Shaped like Django's user models: `is_authenticated` and `pk`."""

    is_authenticated = True

    def __init__(self, pk: int) -> None:
        self.pk = pk


class Anonymous:
    is_authenticated = False
    pk = None


class HeaderAuth:
    """Stands in for Django's `AuthenticationMiddleware`: sets `request.user` and `request.auser`."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponse]]) -> None:
        self.get_response = get_response

    async def __call__(self, request: Any) -> HttpResponse:
        header = request.headers.get("x-account")
        user = Anonymous() if header is None else Account(int(header))

        async def auser() -> object:
            return user

        request.user = user
        request.auser = auser
        return await self.get_response(request)


class SyncHeaderAuth:
    """A sync-only middleware: below it Django runs `RouteMiddleware` in its sync mode."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> HttpResponse:
        header = request.headers.get("x-account")
        request.user = Anonymous() if header is None else Account(int(header))
        return self.get_response(request)


async def item(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse({"id": pk})


def archive(request: HttpRequest, year: str) -> HttpResponse:  # a sync view
    return HttpResponse(year)


async def order(request: HttpRequest, order: Any) -> HttpResponse:
    return HttpResponse(str(order))


def only_post(request: HttpRequest) -> HttpResponse:  # a sync view
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    return HttpResponse("posted")


class BoomError(Exception):
    pass


async def boom(request: HttpRequest) -> HttpResponse:
    raise BoomError("the view failed")


async def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


shop = [path("orders/<uuid:order>/", order)]
urlpatterns = [
    path("api/", include([path("items/<int:pk>/", item), re_path(r"^archive/(?P<year>[0-9]{4})/$", archive)])),
    path("api/v2/", include([path("shop/", include(shop))])),
    path("only-post/", only_post),
    path("boom/", boom),
    path("health/", health),
]

ORDER = "7f8e4c0a-1b2c-4d5e-8f90-a1b2c3d4e5f6"


async def test_templates_of_includes_and_re_path(make_stats: StatsFactory) -> None:
    async with make_stats() as stats:
        app = UsageMiddleware(get_asgi_application(), stats=stats)
        async with client(app) as c:
            assert (await c.get("/api/items/3/")).json() == {"id": 3}
            assert (await c.get("/api/items/4/")).json() == {"id": 4}
            assert (await c.get("/api/archive/2024/")).text == "2024"
            assert (await c.get(f"/api/v2/shop/orders/{ORDER}/")).text == ORDER
        counts = await recorded(stats)
    assert counts == {
        ("page", "/api/items/{pk}/"): 2,
        ("page", "/api/archive/{year}/"): 1,
        ("page", "/api/v2/shop/orders/{order}/"): 1,
        ("status", "2xx"): 4,
        ("seen", "visitor"): 1,
    }


async def test_not_found_method_not_allowed_and_a_500(make_stats: StatsFactory) -> None:
    async with make_stats() as stats:
        app = UsageMiddleware(get_asgi_application(), stats=stats)
        async with client(app) as c:
            assert (await c.get("/nothing/")).status_code == 404
            assert (await c.get("/api/items/x/")).status_code == 404
            assert (await c.get("/only-post/")).status_code == 405
            assert (await c.get("/boom/")).status_code == 500  # Django's own 500 page
        counts = await recorded(stats)
    assert counts == {
        ("bad-req", "not-found"): 2,
        ("page", "/only-post/"): 1,
        ("page", "/boom/"): 1,
        ("status", "4xx"): 3,
        ("status", "5xx"): 1,
        ("seen", "visitor"): 1,
    }


# Django leaves the request body's temporary file to the garbage collector when an exception propagates
# out of its handler (DEBUG_PROPAGATE_EXCEPTIONS), with or without this package.
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function SpooledTemporaryFile.__del__:pytest.PytestUnraisableExceptionWarning"
)
async def test_a_propagated_exception_is_counted_as_5xx_and_re_raised_unchanged(make_stats: StatsFactory) -> None:
    async with make_stats() as stats:
        django_app = get_asgi_application()
        app = UsageMiddleware(django_app, stats=stats)
        settings.DEBUG_PROPAGATE_EXCEPTIONS = True
        try:
            async with client(django_app) as c:
                with pytest.raises(BoomError) as bare:
                    await c.get("/boom/")
            async with client(app) as c:
                with pytest.raises(BoomError) as wrapped:
                    await c.get("/boom/")
        finally:
            settings.DEBUG_PROPAGATE_EXCEPTIONS = False
        counts = await recorded(stats)
    assert counts == {("page", "/boom/"): 1, ("status", "5xx"): 1, ("seen", "visitor"): 1}
    assert str(wrapped.value) == str(bare.value) == "the view failed"
    assert wrapped.value.__traceback__ is not None
    del bare, wrapped
    gc.collect()  # the unclosed files are reported here, in this test


async def test_responses_are_byte_identical(make_stats: StatsFactory) -> None:
    sent = [
        ("GET", "/api/items/3/"),
        ("GET", "/api/archive/2024/"),
        ("GET", "/nothing/"),
        ("GET", "/only-post/"),
        ("POST", "/only-post/"),
        ("GET", "/boom/"),
    ]

    async with make_stats() as stats:
        bare = await responses(get_asgi_application(), sent, {"x-account": "9"})
        wrapped = await responses(UsageMiddleware(get_asgi_application(), stats=stats), sent, {"x-account": "9"})
        counts = await recorded(stats)
    assert bare == wrapped
    assert counts == {
        ("page", "/api/items/{pk}/"): 1,
        ("page", "/api/archive/{year}/"): 1,
        ("page", "/only-post/"): 2,
        ("page", "/boom/"): 1,
        ("bad-req", "not-found"): 1,
        ("status", "2xx"): 3,
        ("status", "4xx"): 2,
        ("status", "5xx"): 1,
        ("seen", "user"): 1,
    }


async def test_excluded_paths_and_signed_in_users(make_stats: StatsFactory) -> None:
    async with make_stats() as stats:
        app = UsageMiddleware(get_asgi_application(), stats=stats, exclude=("/health/",))
        async with client(app) as c:
            assert (await c.get("/health/")).text == "ok"
            for account in ("1", "2", "1"):
                assert (await c.get("/api/items/5/", headers={"x-account": account})).status_code == 200
            assert (await c.get("/api/items/5/")).status_code == 200
        counts = await recorded(stats)
    assert counts == {
        ("page", "/api/items/{pk}/"): 4,
        ("status", "2xx"): 4,
        ("seen", "user"): 2,
        ("seen", "visitor"): 1,
    }


async def test_route_middleware_in_sync_mode(make_stats: StatsFactory) -> None:
    middleware = settings.MIDDLEWARE
    settings.MIDDLEWARE = ["usage_stats.django.RouteMiddleware", f"{__name__}.SyncHeaderAuth"]
    try:
        django_app = get_asgi_application()
    finally:
        settings.MIDDLEWARE = middleware
    async with make_stats() as stats:
        async with client(UsageMiddleware(django_app, stats=stats)) as c:
            assert (await c.get("/api/items/6/", headers={"x-account": "3"})).json() == {"id": 6}
            assert (await c.get("/api/archive/1999/")).text == "1999"
            assert (await c.get("/nothing/", headers={"x-account": "4"})).status_code == 404
        counts = await recorded(stats)
    assert counts == {
        ("page", "/api/items/{pk}/"): 1,
        ("page", "/api/archive/{year}/"): 1,
        ("bad-req", "not-found"): 1,
        ("status", "2xx"): 2,
        ("status", "4xx"): 1,
        ("seen", "user"): 2,
        ("seen", "visitor"): 1,
    }


async def test_lifespan_starts_and_stops_the_stats(make_stats: StatsFactory) -> None:
    stats = make_stats()
    app = Lifespan(UsageMiddleware(get_asgi_application(), stats=stats), stats=stats)
    to_app: list[dict[str, Any]] = [{"type": "lifespan.startup"}]
    from_app: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return to_app.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        from_app.append(message)
        if message["type"] == "lifespan.startup.complete":
            async with client(app) as c:  # the server serves requests between startup and shutdown
                assert (await c.get("/api/items/1/")).json() == {"id": 1}
            to_app.append({"type": "lifespan.shutdown"})

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert [m["type"] for m in from_app] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    async with make_stats() as reader:  # the final flush at shutdown saved the request
        counts = await recorded(reader)
    assert counts == {("page", "/api/items/{pk}/"): 1, ("status", "2xx"): 1, ("seen", "visitor"): 1}


async def test_lifespan_reports_a_bad_setting(make_stats: StatsFactory) -> None:
    async with make_stats():
        pass  # the schema records its time zone, UTC
    stats = make_stats(timezone="Europe/Berlin")  # disagrees with the schema: start() raises ConfigError
    app = Lifespan(get_asgi_application(), stats=stats)
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "timezone" in sent[0]["message"]


EXAMPLE = """
import asyncio, sys
import httpx
from example_app.django_app import create_app
from usage_stats import UsageConfig

async def main():
    app = create_app(UsageConfig(dsn=sys.argv[1], schema=sys.argv[2]))
    events = [{"type": "lifespan.startup"}]
    async def receive():
        while not events:
            await asyncio.sleep(0.01)
        return events.pop(0)
    async def send(message):
        pass
    lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    await asyncio.sleep(0)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.1", 1000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        assert (await c.get("/api/items/4/")).json() == {"id": 4}
        assert (await c.get("/health/")).text == "ok"
    events.append({"type": "lifespan.shutdown"})
    await lifespan

asyncio.run(main())
"""


async def test_the_example_app(pg_dsn: str, schema: str, make_stats: StatsFactory) -> None:
    # in a process of its own: the example configures Django's settings, which this module did here
    done = await anyio.run_process([sys.executable, "-c", EXAMPLE, pg_dsn, schema], check=False)
    assert done.returncode == 0, done.stderr.decode()
    async with make_stats() as reader:
        counts = await recorded(reader)
    assert counts == {("page", "/api/items/{pk}/"): 1, ("status", "2xx"): 1, ("seen", "visitor"): 1}
