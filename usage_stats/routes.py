"""The event name of a request: the full path template of the route or mount that served it.

After the app answered, the scope tells what served the request, on every supported version:
Starlette's router (0.37 on) leaves the innermost matched route's `endpoint` in it (a mount's is the
mounted app), Starlette 1.7+ and FastAPI's API routes also leave the `route`, and FastAPI 0.16x its
per-inclusion route context. None of them knows the mount and router prefixes above it, and the scope's
`root_path` holds those prefixes with their raw values. So the app's route tree is indexed once (and
again only when an endpoint it does not know shows up): every position of every route and mount with
its full template, prefixes included. A request's template is the one of its endpoint's position; an
endpoint found at several positions is told apart by the route and context in the scope, else by
matching the request path against those positions only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.routing import BaseRoute, Host, Mount, compile_path

from .cache import BoundedCache
from .frameworks import scope_template

__all__ = ["RouteTemplates", "route_context"]

logger = logging.getLogger(__name__)

_MAX_DEPTH = 32  # mount and middleware nesting followed when indexing; deeper is not indexed
_UNKNOWN_LIMIT = 4096
_NAMED_GROUP = re.compile(r"\(\?P<[^>]*>")


@dataclass(frozen=True, slots=True)
class Position:
    """One place in the route tree where an endpoint answers."""

    template: str | None  # None: a router mounted here ran, and none of its routes matched (a 404)
    pattern: re.Pattern[str]  # the paths, below the middleware's root path, this position answers
    route: object  # what `scope["route"]` holds when this position answered (if the version sets it)
    context: object | None  # FastAPI's route context of the inclusion leading here, if any


class RouteTemplates:
    """Resolves the template of a request from the scope the app left, through an index of `app`'s routes.

    `app` is the app the middleware wraps: its routes are found through `.routes`, following `.app`
    through middleware (a Starlette or FastAPI app, a `Router`, any middleware that keeps `.app`).
    """

    def __init__(self, app: object) -> None:
        self._app = app
        self._index: dict[int, list[tuple[object, Position]]] | None = None
        self._unknown: BoundedCache[int, object] = BoundedCache(_UNKNOWN_LIMIT)  # endpoints not in the tree
        self._failed = False

    def __call__(self, scope: MutableMapping[str, Any], entry_root_path: str) -> tuple[str | None, bool]:
        """The template (None when no route or mount served the request), and whether it follows from the
        scope's endpoint, route and route context alone (then callers may cache it under those).
        Never raises: a route tree it cannot read names the request `None` (the request still counts)."""
        try:
            return self._resolve(scope, entry_root_path)
        except Exception:
            if not self._failed:
                self._failed = True
                logger.warning("usage_stats: could not read the app's route tree; counted as not found", exc_info=True)
            return None, False

    def _resolve(self, scope: MutableMapping[str, Any], entry_root_path: str) -> tuple[str | None, bool]:
        endpoint = scope.get("endpoint")
        if endpoint is None:  # not Starlette's routing, or nothing matched: another framework's template, if any
            return scope_template(scope), False
        positions = self._positions(endpoint, scope)
        if not positions:
            return None, True
        if len(positions) > 1:
            context = route_context(scope)
            positions = [p for p in positions if p.context is context] or positions
            route = scope.get("route")
            positions = [p for p in positions if p.route is route] or positions
        if len(positions) == 1:
            return positions[0].template, True
        path = _route_path(scope, entry_root_path)
        for position in positions:
            if position.pattern.fullmatch(path):
                return position.template, False
        return positions[0].template, False

    def _positions(self, endpoint: object, scope: MutableMapping[str, Any]) -> list[Position]:
        key = id(endpoint)
        if self._index is None:
            self._index = self._build(scope)
        found = self._index.get(key)
        if found is None or found[0][0] is not endpoint:
            if self._unknown.get(key) is endpoint:
                return []
            self._index = self._build(scope)  # routes added since, or an endpoint outside this app's tree
            found = self._index.get(key)
            if found is None or found[0][0] is not endpoint:
                self._unknown.put(key, endpoint)
                logger.debug("usage_stats: an endpoint outside the app's route tree answered; counted as not found")
                return []
        return [position for _, position in found]

    def _build(self, scope: MutableMapping[str, Any]) -> dict[int, list[tuple[object, Position]]]:
        routes = routes_of(self._app)
        if routes is None:  # a middleware in between without `.app`: the outermost router that ran
            routes = routes_of(scope.get("router"))
        index: dict[int, list[tuple[object, Position]]] = {}
        if routes is not None:
            _Indexer(index).walk(routes, "", "", None, 0)
        return index


def route_context(scope: MutableMapping[str, Any]) -> object | None:
    """FastAPI's per-inclusion route context of the request (FastAPI 0.16x), if any."""
    fastapi = scope.get("fastapi")
    return fastapi.get("effective_route_context") if isinstance(fastapi, dict) else None


def routes_of(app: object) -> list[BaseRoute] | None:
    """The Starlette routes of `app`, following `.app` through middleware; None for an app without
    routes, or whose routes are not Starlette's (another framework's app: counted as a raw app)."""
    for _ in range(_MAX_DEPTH):
        if app is None:
            return None
        routes = getattr(app, "routes", None)
        if isinstance(routes, Iterable) and not isinstance(routes, (str, bytes)):
            found = list(routes)
            return found if all(isinstance(route, BaseRoute) for route in found) else None
        app = getattr(app, "app", None)
    return None


class _Indexer:
    def __init__(self, index: dict[int, list[tuple[object, Position]]]) -> None:
        self.index = index

    def add(self, endpoint: object, position: Position) -> None:
        self.index.setdefault(id(endpoint), []).append((endpoint, position))

    def walk(self, routes: Iterable[object], template: str, regex: str, context: object | None, depth: int) -> None:
        if depth > _MAX_DEPTH:
            return
        for route in routes:
            try:
                contexts = getattr(route, "effective_route_contexts", None)
                if callable(contexts) and not isinstance(route, (Mount, Host)):
                    # FastAPI 0.16x keeps an included router as one route; its contexts carry the full paths.
                    for inner in contexts():
                        effective = getattr(inner, "starlette_route", None) or inner
                        scope_route = getattr(inner, "original_route", effective)
                        self.visit(effective, scope_route, template, regex, inner, depth)
                else:
                    self.visit(route, route, template, regex, context, depth)
            except Exception:  # a route this module cannot read: its requests count as not found
                logger.debug("usage_stats: skipped a route that could not be indexed", exc_info=True)

    def visit(
        self, route: object, scope_route: object, template: str, regex: str, context: object | None, depth: int
    ) -> None:
        if isinstance(route, Mount):
            mount_template = template + route.path
            mount_regex = regex + _unanchored(compile_path(route.path)[0])
            pattern = re.compile(mount_regex + "/.*", re.DOTALL)
            inner = routes_of(route.app)
            if inner is None:  # an app without routes of its own: StaticFiles, a raw ASGI app
                self.add(route.app, Position(mount_template + "/{path}", pattern, scope_route, context))
                return
            self.add(route.app, Position(None, pattern, scope_route, context))
            self.walk(inner, mount_template, mount_regex, context, depth + 1)
        elif isinstance(route, Host):  # the host name is not part of the path
            inner = routes_of(route.app)
            self.add(route.app, Position(None, re.compile(regex + ".*", re.DOTALL), scope_route, context))
            if inner is not None:
                self.walk(inner, template, regex, context, depth + 1)
        else:
            endpoint = getattr(route, "endpoint", None)
            path_format = getattr(route, "path_format", None)
            path_regex = getattr(route, "path_regex", None)
            if endpoint is None or not isinstance(path_format, str) or not isinstance(path_regex, re.Pattern):
                return
            pattern = re.compile(regex + _unanchored(path_regex), re.DOTALL)
            self.add(endpoint, Position(template + path_format, pattern, scope_route, context))


def _unanchored(pattern: re.Pattern[str]) -> str:
    """A route regex without its anchors and group names, to be joined to its mount prefixes."""
    source = pattern.pattern.removeprefix("^").removesuffix("$")
    return _NAMED_GROUP.sub("(?:", source)


def _route_path(scope: MutableMapping[str, Any], root_path: str) -> str:
    """The request path as the middleware's app routes it (as Starlette's `get_route_path`)."""
    path = scope.get("path", "")
    if not isinstance(path, str):
        return ""
    if root_path and path.startswith(root_path):
        if path == root_path:
            return ""
        if path[len(root_path)] == "/":
            return path[len(root_path) :]
    return path
