"""The dashboard's routes: the daily and monthly pages and their CSV and JSON downloads."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..errors import StoreUnavailableError, UsageStatsError
from ..sanitise import MAX_NAME
from .model import VIEWS, load_table, load_view
from .page import error_page, render_page

if TYPE_CHECKING:
    from ..stats import UsageStats

__all__ = ["build_app"]

_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # No script, no external asset: the page only needs its inline style and same-origin forms.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
}
_MAX_CATEGORIES = 20
Endpoint = Callable[[Request], Awaitable[Response]]
_MEDIA = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


class BadFilter(ValueError):
    """A query parameter the dashboard cannot use."""


def _filters(request: Request) -> tuple[float, list[str]]:
    raw = request.query_params.get("minimum", "").strip()
    try:
        minimum = float(raw) if raw else 0.0
    except ValueError:
        raise BadFilter(f"minimum must be a number, not {raw[:40]!r}") from None
    if not math.isfinite(minimum) or minimum < 0:
        raise BadFilter("minimum must be a number of zero or more")
    categories = [c for c in request.query_params.getlist("category") if c]
    if len(categories) > _MAX_CATEGORIES or any(len(c) > MAX_NAME for c in categories):
        raise BadFilter("too many or too long categories")
    return minimum, list(dict.fromkeys(categories))


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def build_app(stats: UsageStats) -> Starlette:
    """The Starlette app with every dashboard route (`Guard` wraps it with the auth check)."""

    async def index(request: Request) -> Response:
        return RedirectResponse(f"{_base(request)}/day{'?' + request.url.query if request.url.query else ''}")

    def page(period: str) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            minimum, categories = _filters(request)
            view = await load_view(stats, period, minimum=minimum, categories=categories)
            return HTMLResponse(render_page(view, _base(request)), headers=_HEADERS)

        return endpoint

    def download(period: str, fmt: str) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            minimum, categories = _filters(request)
            table, _ = await load_table(stats, period, minimum=minimum, categories=categories)
            body = table.to_csv() if fmt == "csv" else table.to_json()
            disposition = {"Content-Disposition": f'attachment; filename="usage-{period}.{fmt}"'}
            return Response(body, media_type=_MEDIA[fmt], headers=_HEADERS | disposition)

        return endpoint

    async def bad_filter(request: Request, exc: Exception) -> Response:
        return HTMLResponse(error_page(400, "Bad filter", str(exc)), status_code=400, headers=_HEADERS)

    async def unavailable(request: Request, exc: Exception) -> Response:
        if isinstance(exc, StoreUnavailableError):
            title, message = "Database unavailable", "The statistics database cannot be reached just now."
        else:  # not started, or stopped: the app's lifespan does not run `stats`
            title, message = "Statistics not running", str(exc)
        return HTMLResponse(error_page(503, title, message), status_code=503, headers=_HEADERS)

    routes = [Route("/", index, methods=["GET"])]
    for period in VIEWS:
        routes.append(Route(f"/{period}", page(period), methods=["GET"]))
        routes.extend(Route(f"/{period}.{fmt}", download(period, fmt), methods=["GET"]) for fmt in _MEDIA)
    return Starlette(routes=routes, exception_handlers={BadFilter: bad_filter, UsageStatsError: unavailable})
