"""The types of the callables users pass in: the clock, the flush hook, the middleware's naming
hooks and the dashboard's `auth` (all exported from `usage_stats`, to type your own against)."""

from __future__ import annotations

from collections.abc import Awaitable, MutableMapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from starlette.requests import Request

    from .stats import UsageStats

__all__ = ["BeforeFlush", "Categoriser", "Clock", "DashboardAuth", "EventNamer", "UserIdentifier"]


class Clock(Protocol):
    """Returns the current time as an aware datetime."""

    def __call__(self) -> datetime: ...


class BeforeFlush(Protocol):
    """Called with the `UsageStats` before every flush; may be sync or async."""

    def __call__(self, stats: UsageStats, /) -> Awaitable[None] | None: ...


class EventNamer(Protocol):
    """`UsageMiddleware(event_name=...)`: given the ASGI scope and the response status, the event
    name to count the request under, or None to keep the route template."""

    def __call__(self, scope: MutableMapping[str, Any], status: int, /) -> str | None: ...


class Categoriser(Protocol):
    """`UsageMiddleware(category=...)`: given the ASGI scope and the response status, the category
    to count the request in, or None to keep `page`."""

    def __call__(self, scope: MutableMapping[str, Any], status: int, /) -> str | None: ...


class UserIdentifier(Protocol):
    """`UsageMiddleware(user_id=...)`: given the ASGI scope, the signed-in user's ID (turned into a
    string), or None (or "") to count the request as a visitor's."""

    def __call__(self, scope: MutableMapping[str, Any], /) -> object: ...


class DashboardAuth(Protocol):
    """`UsageStats.dashboard(auth=...)`: given the request, returns (or awaits to) a true value to
    allow it, a false one to refuse it with 403, or a Starlette `Response` to send instead (a 401
    with `WWW-Authenticate`, a redirect to a sign-in page...)."""

    def __call__(self, request: Request, /) -> Any | Awaitable[Any]: ...
