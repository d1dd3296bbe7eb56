"""Shared by the route and middleware tests: a FastAPI app with path parameters, nested routers with
prefixes, a sync endpoint (run in a worker thread), an endpoint that raises and a mounted sub-app; an
HTTP client for any ASGI app, and what reached PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI
from starlette.types import ASGIApp

from usage_stats import UsageStats

Counts = dict[tuple[str, str], int | float]


async def recorded(stats: UsageStats) -> Counts:
    """Flush, then every (category, event) -> value of today's day table."""
    await stats.flush()
    table = await stats.table("day")
    return {(r.category, r.event): r.value for p in table.periods for r in p.rows}


def client(app: ASGIApp, ip: str = "192.0.2.10", *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 4321), raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


Response = tuple[int, list[tuple[str, str]], bytes]


async def responses(
    app: Any, requests: list[tuple[str, str]], headers: dict[str, str], *, ignore: tuple[str, ...] = ()
) -> list[Response]:
    """Status, headers (but those named in `ignore`) and body of each (method, path) sent to `app`
    in order: what byte-identical means when an app is served with and without the middleware."""
    out = []
    async with client(app) as c:
        for method, path in requests:
            r = await c.request(method, path, headers=headers)
            out.append((r.status_code, [h for h in r.headers.multi_items() if h[0] not in ignore], r.content))
    return out


def shop_app(on_sync: Callable[[], None] | None = None) -> FastAPI:
    """`/items/{item_id}`, `/api/v1/users/{user_id}` (+ `/sync`, `/fail`), `/legacy/things/{thing}`."""
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    users = APIRouter(prefix="/users")

    @users.get("/{user_id}")
    async def user(user_id: str) -> dict[str, str]:
        return {"id": user_id}

    @users.get("/{user_id}/sync")
    def user_sync(user_id: str) -> dict[str, str]:  # runs in a worker thread
        if on_sync is not None:
            on_sync()
        return {"id": user_id}

    @users.post("/{user_id}/fail")
    async def fail(user_id: str) -> None:
        raise RuntimeError("failed")

    v1 = APIRouter(prefix="/v1")
    v1.include_router(users)
    api = APIRouter(prefix="/api")
    api.include_router(v1)
    app.include_router(api)

    sub = FastAPI()

    @sub.get("/things/{thing}")
    async def thing(thing: str) -> dict[str, str]:
        return {"thing": thing}

    app.mount("/legacy", sub)
    return app


def http_scope(path: str, method: str = "GET", root_path: str = "") -> dict[str, Any]:
    """A plain HTTP scope from 192.0.2.1, as a server would send it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("192.0.2.1", 1234),
        "server": ("testserver", 80),
    }
