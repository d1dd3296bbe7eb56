"""The dashboard's gate: every request is marked uncounted, then let through only if `auth` allows it."""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..middleware import SKIP

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from ..hooks import DashboardAuth

__all__ = ["Guard"]

logger = logging.getLogger(__name__)

_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class Guard:
    """Pure ASGI: sets the usage middleware's skip flag, then asks `auth` before calling the app.

    Without `auth` every request is refused: a dashboard is never public by accident.
    """

    def __init__(self, app: ASGIApp, auth: DashboardAuth | None) -> None:
        self.app = app
        self.auth = auth
        if auth is None:
            logger.warning("usage_stats: the dashboard has no auth callable; every request is refused")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope[SKIP] = True  # the usage middleware reads this after we return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        refusal = await self._refusal(Request(scope, receive))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _refusal(self, request: Request) -> Response | None:
        if self.auth is None:
            return _forbidden()
        verdict = self.auth(request)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if isinstance(verdict, Response):
            return verdict
        return None if verdict else _forbidden()


def _forbidden() -> Response:
    return PlainTextResponse("Forbidden", status_code=403, headers=_NO_STORE)
