"""The example app: a few pages, a signed-in area, a business event, and its own statistics."""

from __future__ import annotations

import dataclasses
import os
from datetime import timedelta

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser, SimpleUser
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection

from usage_stats import UsageConfig, UsageMiddleware, UsageStats

ITEMS = {1: "teapot", 2: "kettle", 3: "cup"}


class CookieAuth(AuthenticationBackend):
    """Demo sign-in: the `user` cookie names the user. Real apps use real authentication."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        name = conn.cookies.get("user")
        if not name:
            return None
        return AuthCredentials(["authenticated"]), SimpleUser(name)


def is_admin(request: Request) -> bool:
    """Demo rule for the dashboard: only the signed-in user "admin" (visit /login?name=admin)."""
    return bool(request.user.is_authenticated and request.user.display_name == "admin")


def create_app(config: UsageConfig | None = None) -> FastAPI:
    """Build the app; the configuration comes from the environment (USAGE_STATS_*) by default."""
    if config is None:
        config = UsageConfig.from_env()
        if "USAGE_STATS_FLUSH_INTERVAL" not in os.environ:  # show figures soon in a demo
            config = dataclasses.replace(config, flush_interval=timedelta(seconds=10))
    stats = UsageStats(config)
    app = FastAPI(title="usage_stats example shop", lifespan=stats.lifespan)
    app.state.stats = stats

    @app.get("/", response_class=HTMLResponse)
    async def home() -> str:
        links = "".join(f'<li><a href="/items/{i}">{name}</a></li>' for i, name in ITEMS.items())
        return f"<h1>Example shop</h1><ul>{links}</ul><p><a href='/login?name=alice'>sign in</a></p>"

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, object]:
        if item_id not in ITEMS:
            raise HTTPException(404, "no such item")
        return {"id": item_id, "name": ITEMS[item_id]}

    @app.post("/items/{item_id}/buy")
    async def buy(item_id: int) -> dict[str, object]:
        if item_id not in ITEMS:
            raise HTTPException(404, "no such item")
        stats.count("purchase", "business")  # the app's own event
        return {"bought": ITEMS[item_id]}

    @app.get("/login")
    async def login(name: str) -> RedirectResponse:
        response = RedirectResponse("/account", status_code=303)
        response.set_cookie("user", name, httponly=True)
        return response

    @app.get("/account")
    async def account(request: Request) -> dict[str, object]:
        if not request.user.is_authenticated:
            raise HTTPException(401, "sign in first")
        return {"user": request.user.display_name}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/stats")
    async def usage(period: str = "day") -> JSONResponse:
        if period not in ("day", "month", "base"):
            raise HTTPException(400, "period is day, month or base")
        await stats.flush()
        table = await stats.table(period)
        return JSONResponse({"period": period, "rows": table.as_dicts()})

    # The dashboard: its own requests are never counted, and only `is_admin` may see it.
    app.mount("/usage", stats.dashboard(auth=is_admin))

    # Middleware added last runs first: usage_stats sees the user set by the authentication middleware.
    app.add_middleware(AuthenticationMiddleware, backend=CookieAuth())
    app.add_middleware(UsageMiddleware, stats=stats, exclude=("/health",))
    return app
