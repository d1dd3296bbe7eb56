"""The event name of a request: its matched route's full path template, mount prefixes included."""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

from starlette.routing import Mount

__all__ = ["RouteTemplates"]

_CACHE_LIMIT = 4096


class RouteTemplates:
    """Reads the route template from the scope after the app ran (Starlette and FastAPI routers).

    The innermost route's template is joined to the prefix added by mounts. The raw mount prefix
    is used when no mount has path parameters (the common case); otherwise it is mapped back to
    its template (`/orgs/{org}`), so raw values never become event names.
    """

    def __init__(self) -> None:
        self._mounts: list[tuple[re.Pattern[str], str]] | None = None
        self._prefixes: dict[str, str] = {}

    def __call__(self, scope: MutableMapping[str, Any], entry_root_path: str) -> str | None:
        """The template, or None when no route matched."""
        route = scope.get("route")
        if route is None:
            return None
        path = None
        fastapi_scope = scope.get("fastapi")
        if isinstance(fastapi_scope, dict):
            context = fastapi_scope.get("effective_route_context")
            path = getattr(context, "path_format", None)
        if not isinstance(path, str):
            path = getattr(route, "path_format", None)
        if not isinstance(path, str):
            path = getattr(route, "path", None)
            if not isinstance(path, str):
                return None
        root = scope.get("root_path", "")
        if isinstance(root, str) and len(root) > len(entry_root_path) and root.startswith(entry_root_path):
            prefix = self._template_prefix(scope, root[len(entry_root_path) :])
            if _is_mount(route):
                if getattr(route, "routes", None):  # a mounted router in which no route matched
                    return None
                return prefix + "/{path}"  # an app mounted without its own routes, like StaticFiles
            return prefix + path
        return path

    def _template_prefix(self, scope: MutableMapping[str, Any], raw: str) -> str:
        cached = self._prefixes.get(raw)
        if cached is not None:
            return cached
        if self._mounts is None:
            self._mounts = _parameterised_mounts(scope.get("app") or scope.get("router"))  # a bare Router: no app
        prefix = raw
        for pattern, template in self._mounts:
            if pattern.fullmatch(raw):
                prefix = template
                break
        if len(self._prefixes) >= _CACHE_LIMIT:
            self._prefixes.clear()
        self._prefixes[raw] = prefix
        return prefix


def _is_mount(route: object) -> bool:
    return isinstance(route, Mount)


def _parameterised_mounts(app: object) -> list[tuple[re.Pattern[str], str]]:
    """Every mount prefix with path parameters reachable from `app`, as (regex, template)."""
    found: list[tuple[re.Pattern[str], str]] = []

    def walk(routes: object, prefix_template: str, prefix_regex: str, depth: int) -> None:
        if depth > 8 or not isinstance(routes, (list, tuple)):
            return
        for route in routes:
            inner = getattr(route, "routes", None)
            path = getattr(route, "path", None)
            if inner is None or not isinstance(path, str) or not hasattr(route, "app"):
                continue
            template = prefix_template + path
            regex = prefix_regex + re.sub(r"\\\{[^/]*?\\\}", "[^/]+", re.escape(path))
            if "{" in path or "{" in prefix_template:
                found.append((re.compile(regex), template))
            walk(inner, template, regex, depth + 1)

    walk(getattr(app, "routes", None), "", "", 0)
    return found
