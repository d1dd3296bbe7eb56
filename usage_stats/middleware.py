"""`UsageMiddleware`: pure ASGI, counts each HTTP request by route template, status class and visitor."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from .client import ClientAddress
from .routes import RouteTemplates

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from .stats import UsageStats

__all__ = ["UsageMiddleware"]

logger = logging.getLogger(__name__)

# Set to a true value in the scope by anything (such as the dashboard) whose requests must not be counted.
SKIP = "usage_stats.skip"
NOT_FOUND = "not-found"
BAD_REQUEST = "bad-req"
_STATUS_CLASSES = {n: f"{n}xx" for n in range(1, 6)}

EventNamer = Callable[[MutableMapping[str, Any], int], "str | None"]
Categoriser = Callable[[MutableMapping[str, Any], int], "str | None"]
UserIdentifier = Callable[[MutableMapping[str, Any]], object]


class UsageMiddleware:
    """Counts every HTTP request by its route template and category, the status class in category
    `status`, and a distinct user (signed in) or visitor (by client network) for the day.

    ::

        app.add_middleware(UsageMiddleware, stats=stats, exclude=("/health",))

    It never changes the response and never raises because of statistics; an exception from the
    app is counted as 5xx and re-raised. WebSocket and lifespan scopes pass straight through.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        stats: UsageStats,
        event_name: EventNamer | None = None,
        category: Categoriser | None = None,
        user_id: UserIdentifier | None = None,
        exclude: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.stats = stats
        self.event_name = event_name
        self.category = category
        self.user_id = user_id
        if isinstance(exclude, str):
            exclude = (exclude,)
        self.exclude = tuple(exclude)
        self._templates = RouteTemplates()
        self._client = ClientAddress(stats.config.trusted_networks)
        self._failures = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self.exclude and isinstance(path, str) and path.startswith(self.exclude):
            await self.app(scope, receive, send)
            return
        status = 500
        root_path = scope.get("root_path", "")

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException:
            self._record(scope, 500, root_path)
            raise
        self._record(scope, status, root_path)

    def _record(self, scope: Scope, status: int, root_path: str) -> None:
        try:
            if scope.get(SKIP):
                return
            stats = self.stats
            event = self._templates(scope, root_path) if isinstance(root_path, str) else None
            category = "page"
            if event is None:
                event, category = NOT_FOUND, BAD_REQUEST
            if self.event_name is not None:
                event = self.event_name(scope, status) or event
            if self.category is not None:
                category = self.category(scope, status) or category
            counters = stats._counters
            ts = stats._now()
            counters.add(category, event, 1, ts)
            counters.add("status", _STATUS_CLASSES.get(status // 100, "other"), 1, ts)
            try:
                user = self._user(scope)
            except Exception:
                user = None  # a user object whose attributes raise counts as a visitor
            if user is not None:
                counters.seen("u", "user", user, ts)
                return
            address = self._client(scope)
            if address is not None:
                network = stats._cut(address)
                if network is not None:
                    counters.seen("v", "visitor", network, ts)
        except Exception:
            self._failures += 1
            if self._failures & (self._failures - 1) == 0:  # the 1st, 2nd, 4th, 8th... time
                logger.exception(
                    "usage_stats: could not record a request (%d so far; the responses were not affected)",
                    self._failures,
                )

    def _user(self, scope: Scope) -> str | None:
        if self.user_id is not None:
            found = self.user_id(scope)
            return None if found is None or found == "" else str(found)
        user = scope.get("user")
        if user is None:
            return None
        if not getattr(user, "is_authenticated", False):
            return None
        try:
            identity = user.identity
        except Exception:  # Starlette's BaseUser.identity raises NotImplementedError
            identity = None
        if identity is None or identity == "":
            identity = getattr(user, "display_name", None)
        return None if identity is None or identity == "" else str(identity)
