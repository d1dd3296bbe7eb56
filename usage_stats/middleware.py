"""`UsageMiddleware`: pure ASGI, counts each HTTP request by route template, status class and visitor."""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from starlette.authentication import BaseUser

from .cache import BoundedCache
from .client import ClientAddress
from .counters import FOLD_AT
from .frameworks import ROUTE, scope_user
from .frameworks import USER as FRAMEWORK_USER
from .hooks import Categoriser, EventNamer, UserIdentifier
from .recorder import USER, VISITOR, Slot
from .routes import RouteTemplates, route_context

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from .stats import UsageStats

__all__ = ["UsageMiddleware"]

logger = logging.getLogger(__name__)
_get_ident = threading.get_ident

# Set to a true value in the scope by anything (such as the dashboard) whose requests must not be counted.
SKIP = "usage_stats.skip"
NOT_FOUND = "not-found"
BAD_REQUEST = "bad-req"
_STATUS_CLASSES = {n: f"{n}xx" for n in range(1, 6)}
_STATUS_KEYS = {code: ("status", _STATUS_CLASSES[code // 100]) for code in range(100, 600)}
_CACHE_LIMIT = 65_536
_SLOTS_PER_EVENT = 16  # statuses per event and kind with a slot of their own; rarer ones take the general path
_BASE_IDENTITY = BaseUser.__dict__["identity"]
_USER_TYPES = 64
_LITESTAR = "litestar_app"
_UNKNOWN: object = object()  # `_slow`: the user ID is not read yet

# A cached event: the endpoint, route and route context it was resolved from, its (category, event),
# and its slots by status: for visitors by their ASGI `client` pair (the peer is the client), for users,
# and for visitors by the address that trusted proxies forwarded (so the fast path, which reads only
# the first, needs no check of which).
_Event = tuple[object, object, object, tuple[str, str], dict[object, Slot], dict[object, Slot], dict[object, Slot]]


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
        app: ASGIApp | Callable[..., Awaitable[Any]],  # the second: ASGI apps typed their own way (Litestar)
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
        self._templates = RouteTemplates(app)
        self._client = ClientAddress(stats.config.trusted_networks, stats.config.forwarded_header)
        self._failures = 0
        self._user_id_logged = False
        self._hooks = event_name is not None or category is not None or user_id is not None
        # Starlette user classes seen -> whether `identity` is their own (BaseUser's raises NotImplementedError)
        self._user_types: dict[type, bool] = {}
        self._direct = not self._client.trusted  # the peer is the client: its address needs no headers
        recorder = stats.recorder  # the only part of `stats` requests reach
        self._request = recorder.request
        self._hit = recorder.hit
        self._slot = recorder.slot
        self._counters = recorder.counters  # its `fold`, for the inlined `hit`
        self._now = recorder.now
        self._cut = recorder.cut_address
        # `_key` of the endpoint, route and FastAPI route context the app left in the scope -> an
        # `_Event`; only for templates that follow from those three alone
        self._events: BoundedCache[int, _Event] = BoundedCache(_CACHE_LIMIT)
        self._event = self._events.get  # bound once: a dict subclass's method is slower to look up
        # a request that no route served, in an app whose framework leaves no template of its own
        self._not_found: _Event = (None, None, None, (BAD_REQUEST, NOT_FOUND), {}, {}, {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.exclude and self._excluded(scope):
            await self.app(scope, receive, send)
            return
        status = 500
        root_path = scope.get("root_path", "")

        # A plain function that returns `send`'s own awaitable: no coroutine of ours per message.
        def send_wrapper(message: Message) -> Awaitable[None]:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException:
            self._record(scope, 500, root_path)
            raise
        # The common request, inlined (a call costs as much as a tenth of it): a visitor, no hooks, an
        # endpoint, route and route context seen before, with the peer as the client, and a slot
        # admitted to this period (see `counters`): one clock read and one append of the ASGI
        # `client` pair. Everything else goes through `_slow`.
        try:
            endpoint = scope.get("endpoint")
            route = scope.get("route")
            fastapi = scope.get("fastapi")
            if fastapi is None:
                context = None
                hit = self._event(id(endpoint) if route is None else id(route))
            else:
                context = fastapi.get("effective_route_context") if type(fastapi) is dict else None
                hit = self._event(_key(endpoint, route, context))
            if hit is None or hit[0] is not endpoint or hit[1] is not route or hit[2] is not context or SKIP in scope:
                self._slow(scope, status, root_path, hit, endpoint, route, context)
                return
            user = scope.get("user")
            if user is None:
                slot = hit[4].get(status)  # none behind trusted proxies (see `_Event`)
                value = scope.get("client")
            else:
                # `_user`, inlined for a Starlette user class seen before (`_user_types`)
                own_identity = self._user_types.get(type(user))
                if own_identity is None or FRAMEWORK_USER in scope:
                    self._slow(scope, status, root_path, hit, endpoint, route, context)
                    return
                try:
                    value = None
                    if user.is_authenticated:
                        if own_identity:
                            try:
                                value = user.identity
                            except Exception:
                                value = None
                        if value is None or value == "":
                            value = user.display_name
                        if value is not None and (type(value) is not str or not value):
                            value = None if value == "" else str(value)
                except Exception:
                    value = None  # a user object whose attributes raise counts as a visitor
                if value is None:
                    self._slow(scope, status, root_path, hit, endpoint, route, context, None)
                    return
                slot = hit[5].get(status)
            if slot is not None:
                ts = self._now()
                if slot.start <= ts < slot.end and _get_ident() == slot.owner:
                    values = slot.values
                    values.append(value)
                    if len(values) >= FOLD_AT:
                        self._counters.fold(slot)
                    return
            self._slow(scope, status, root_path, hit, endpoint, route, context, None if user is None else value)
        except Exception:
            self._failed()

    def _excluded(self, scope: Scope) -> bool:
        """Whether the request's path, as the app's routes see it, starts with an excluded prefix."""
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and isinstance(path, str) and path.startswith(root):  # the app's own path, as routes see it
            path = path[len(root) :]
        return isinstance(path, str) and path.startswith(self.exclude)

    def _slow(
        self,
        scope: Scope,
        status: int,
        root_path: str,
        hit: _Event | None,
        endpoint: object,
        route: object,
        context: object,
        uid: object = _UNKNOWN,
    ) -> None:
        """A request `__call__` did not count inline: a not-found request, a slot not admitted yet, a
        trusted proxy, a user class not seen yet, hooks or anything else; `hit` is the cache entry
        found for the endpoint, route and route context (None, or another's, when there is none), and
        `uid` the user ID `__call__` already read from the scope's user (None: a visitor), or
        `_UNKNOWN` when it read none."""
        if hit is None or hit[0] is not endpoint or hit[1] is not route or hit[2] is not context:
            if (
                endpoint is None
                and route is None
                and context is None
                and not self._hooks
                and ROUTE not in scope
                and _LITESTAR not in scope
                and FRAMEWORK_USER not in scope
            ):
                hit = self._not_found
            else:
                self._record(scope, status, root_path)
                return
        if SKIP in scope:
            self._record(scope, status, root_path)
            return
        user_id: str | None
        if uid is _UNKNOWN:
            try:
                user_id = self._user(scope)
            except Exception:
                user_id = None  # a user object whose attributes raise counts as a visitor
        else:
            user_id = cast("str | None", uid)
        if user_id is not None:
            slot = hit[5].get(status)
            if slot is None:
                slot = self._new_slot(hit, status, True)
                if slot is None:
                    self._request(hit[3], _status_key(status), USER, user_id)
                    return
            self._hit(slot, user_id)
            return
        slot = (hit[4] if self._direct else hit[6]).get(status)
        if slot is None:
            slot = self._new_slot(hit, status, False)
            if slot is None:
                self._request(hit[3], _status_key(status), VISITOR, self._network(scope))
                return
        # A slot of a middleware whose peer is the client holds ASGI `client` pairs (see `_new_slot`).
        self._hit(slot, scope.get("client") if self._direct else self._client(scope))

    def _new_slot(self, hit: _Event, status: object, user: bool) -> Slot | None:
        """The slot of an event for `status` and a user or a visitor, kept in the event's cache entry;
        None for a status that is no HTTP status, or beyond `_SLOTS_PER_EVENT` of them."""
        slots = hit[5] if user else hit[4] if self._direct else hit[6]
        status_key = _STATUS_KEYS.get(status) if type(status) is int else None
        if status_key is None or len(slots) >= _SLOTS_PER_EVENT:
            return None
        seen = USER if user else VISITOR
        if user:
            slot = self._slot(hit[3], status_key, seen)
        else:  # the visitor's address: the `client` pair itself when the peer is the client
            slot = self._slot(hit[3], status_key, seen, addresses=not self._direct, clients=self._direct)
        slots[status] = slot
        return slot

    def _record(self, scope: Scope, status: int, root_path: str) -> None:
        try:
            self._record_any(scope, status, root_path)
        except Exception:
            self._failed()

    def _record_any(self, scope: Scope, status: int, root_path: str) -> None:
        if scope.get(SKIP):
            return
        event, cacheable = self._templates(scope, root_path) if isinstance(root_path, str) else (None, False)
        category = "page"
        if event is None:
            event, category = NOT_FOUND, BAD_REQUEST
        if cacheable and not self._hooks:
            self._remember(scope, (category, event))
        if self.event_name is not None:
            event = self.event_name(scope, status) or event
        if self.category is not None:
            category = self.category(scope, status) or category
        status_key = _status_key(status)
        try:
            user = self._user(scope)
        except Exception:
            user = None  # a user object whose attributes raise counts as a visitor
        if user is not None:
            self._request((category, event), status_key, USER, user)
        else:
            self._request((category, event), status_key, VISITOR, self._network(scope))

    def _remember(self, scope: Scope, key: tuple[str, str]) -> None:
        """Cache the count key under what the app left in the scope (a route's template never changes)."""
        endpoint = scope.get("endpoint")
        route = scope.get("route")
        context = route_context(scope)
        self._events.put(_key(endpoint, route, context), (endpoint, route, context, key, {}, {}, {}))

    def _network(self, scope: Scope) -> str | None:
        """The visitor's cut network."""
        address = self._client(scope)
        return None if address is None else self._cut(address)

    def _user_id_failed(self, exc: Exception) -> None:
        """Log the first exception of the `user_id` callable, by its type only (its message may hold
        the credential it was reading); later ones are as silent as the requests they count."""
        if not self._user_id_logged:
            self._user_id_logged = True
            logger.error(
                "usage_stats: the user_id callable raised %s; such requests count as visitors "
                "(logged once per middleware, the responses were not affected)",
                type(exc).__name__,
            )

    def _failed(self) -> None:
        self._failures += 1
        if self._failures & (self._failures - 1) == 0:  # the 1st, 2nd, 4th, 8th... time
            logger.exception(
                "usage_stats: could not record a request (%d so far; the responses were not affected)",
                self._failures,
            )

    def _user(self, scope: Scope) -> str | None:
        if self.user_id is not None:
            try:
                found = self.user_id(scope)
            except Exception as exc:
                self._user_id_failed(exc)
                return None  # counted as a visitor
            return None if found is None or found == "" else str(found)
        user = scope.get("user")
        framework_user = scope_user(scope)  # Django's and Quart's hooks, Litestar's user
        if framework_user is not None or user is None:
            return framework_user
        plain = getattr(type(user), "identity", None) is _BASE_IDENTITY
        if isinstance(user, BaseUser) and len(self._user_types) < _USER_TYPES:
            self._user_types[type(user)] = not plain  # its next users take the fast path in `__call__`
        if not getattr(user, "is_authenticated", False):
            return None
        if plain:
            identity = None  # Starlette's BaseUser.identity raises NotImplementedError: skip the exception
        else:
            try:
                identity = user.identity
            except Exception:
                identity = None
        if identity is None or identity == "":
            identity = getattr(user, "display_name", None)
        return None if identity is None or identity == "" else str(identity)


def _status_key(status: object) -> tuple[str, str]:
    """The status class of `status` as a count key: `2xx`..`5xx`, else `other`."""
    try:
        return _STATUS_KEYS[status]  # type: ignore[index]
    except (KeyError, TypeError):
        return ("status", "other")


def _key(endpoint: object, route: object, context: object) -> int:
    """The cache key of a request: its most specific object (checked against all three on a hit)."""
    if context is not None:
        return id(context)
    return id(endpoint) if route is None else id(route)
