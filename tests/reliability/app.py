"""The app that the whole-process tests serve with `uvicorn tests.reliability.app:create_app --factory`.

Configured by the environment: `USAGE_STATS_*` as `UsageConfig.from_env()` reads it, and
`RELIABILITY_CLOCK_OFFSET` (seconds added to the real time, so a test can place the server on a
chosen day). Users are named by the `X-User` header. Every `/items/...` request also bumps a cache
counter outside usage_stats that `before_flush` adds, as a rate limiter or cache would.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.types import Scope

from usage_stats import UsageConfig, UsageMiddleware, UsageStats

CACHE_CATEGORY = "cache"
CACHE_EVENT = "hits"


def _user(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-user":
            return bytes(value).decode("latin-1")
    return None


def create_app() -> Starlette:
    logging.basicConfig(level=logging.INFO, format="%(process)d %(levelname)s %(name)s: %(message)s", force=True)
    offset = timedelta(seconds=float(os.environ.get("RELIABILITY_CLOCK_OFFSET", "0")))

    def clock() -> datetime:
        return datetime.now(UTC) + offset

    cache = {"hits": 0}

    def before_flush(stats: UsageStats) -> None:
        hits, cache["hits"] = cache["hits"], 0
        stats.add(CACHE_EVENT, CACHE_CATEGORY, hits)

    stats = UsageStats(UsageConfig.from_env(), clock=clock, before_flush=before_flush)

    async def item(request: Request) -> JSONResponse:
        cache["hits"] += 1
        return JSONResponse({"id": request.path_params["item_id"]}, headers={"x-pid": str(os.getpid())})

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"ok {os.getpid()}")

    app = Starlette(
        routes=[Route("/items/{item_id:int}", item), Route("/health", health)],
        lifespan=stats.lifespan,
    )
    app.add_middleware(UsageMiddleware, stats=stats, user_id=_user, exclude=("/health",))
    return app
