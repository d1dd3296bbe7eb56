"""Django (ASGI): `RouteMiddleware` tells `UsageMiddleware` the route template and the signed-in user.

Django resolves URLs inside the app, so the outer `UsageMiddleware` cannot see the route; this
middleware puts it into the ASGI scope::

    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware", ...,
                  "usage_stats.django.RouteMiddleware"]

    application = Lifespan(UsageMiddleware(get_asgi_application(), stats=stats), stats=stats)   # asgi.py

The template is `request.resolver_match.route` (the `include()` prefixes joined, `<int:pk>` as `{pk}`,
a `re_path`'s named groups as `{name}`); the user is `request.user.pk` when it is authenticated. It
never changes the response; under WSGI (no ASGI scope) it does nothing. Django refuses ASGI lifespan
events, so `Lifespan` answers them: it starts the statistics when the server starts and stops them
(with their final flush) when it stops.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from .frameworks import ROUTE, USER, brace_template

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from .stats import UsageStats

__all__ = ["Lifespan", "RouteMiddleware"]

logger = logging.getLogger(__name__)


class RouteMiddleware:
    """Puts the resolved route's template and the authenticated user's `pk` into the ASGI scope
    (sync and async; the view's exceptions pass through unchanged)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)
        self._failed = False

    def __call__(self, request: Any) -> Any:
        if self._async:
            return self._call_async(request)
        try:
            return self.get_response(request)
        finally:
            scope = _scope(request)
            if scope is not None:
                self._route(request, scope)
                self._user(scope, getattr(request, "user", None))

    async def _call_async(self, request: Any) -> Any:
        get_response: Callable[[Any], Awaitable[Any]] = self.get_response
        try:
            return await get_response(request)
        finally:
            scope = _scope(request)
            if scope is not None:
                self._route(request, scope)
                user = None
                try:
                    auser = getattr(request, "auser", None)  # Django 5: the user, loaded without blocking
                    user = await auser() if auser is not None else getattr(request, "user", None)
                except Exception:
                    self._log()
                self._user(scope, user)

    def _route(self, request: Any, scope: MutableMapping[str, Any]) -> None:
        try:
            match = getattr(request, "resolver_match", None)
            route = getattr(match, "route", None)
            if isinstance(route, str):
                scope[ROUTE] = brace_template(route)
        except Exception:
            self._log()

    def _user(self, scope: MutableMapping[str, Any], user: object) -> None:
        try:
            if user is not None and getattr(user, "is_authenticated", False):
                pk = getattr(user, "pk", None)
                if pk is not None and pk != "":
                    scope[USER] = str(pk)
        except Exception:
            self._log()

    def _log(self) -> None:
        if not self._failed:  # once per process: the request itself was not affected
            self._failed = True
            logger.warning("usage_stats: could not read a Django request's route or user", exc_info=True)


def _scope(request: Any) -> MutableMapping[str, Any] | None:
    scope = getattr(request, "scope", None)
    return scope if isinstance(scope, dict) else None


class Lifespan:
    """An ASGI app that answers the server's lifespan events by starting and stopping `stats`, and
    passes every other scope to `app` (Django's ASGI handler refuses lifespan events)."""

    def __init__(self, app: Callable[..., Awaitable[Any]], *, stats: UsageStats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.stats.start()  # never fails because the database is away; a bad setting does
                except Exception as exc:  # a ConfigError's message names the setting, never a secret
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stats.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
