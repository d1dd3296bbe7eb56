"""Route templates and users of ASGI frameworks other than Starlette, read from the scope after the app answered.

No framework is imported here: Litestar leaves its route in the scope (`path_template`, `route_handler`,
`litestar_app`), and the small hooks of `usage_stats.django` and `usage_stats.quart` put the template and
the signed-in user under `ROUTE` and `USER`. Every template is returned with `{name}` for a parameter
and a leading `/`, whatever the framework writes (`<int:pk>`, `{id:int}`, `(?P<year>[0-9]{4})`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import Any

__all__ = ["ROUTE", "USER", "brace_template", "scope_template", "scope_user"]

logger = logging.getLogger(__name__)

ROUTE = "usage_stats.route"  # the route template a framework hook resolved (a str)
USER = "usage_stats.user"  # the signed-in user's ID a framework hook found (a str)

_CONVERTER = re.compile(r"<(?:[^<>:]*:)?([^<>:]+)>")  # Django's and Werkzeug's `<int:pk>` and `<pk>`
_TYPED = re.compile(r"\{([^{}:]+):[^{}]*\}")  # Litestar's `{id:int}`
_NAMED_GROUP = "(?P<"


def brace_template(route: str) -> str:
    """`route` as a template: each `<conv:name>`, `{name:type}` or regex group `(?P<name>...)` becomes
    `{name}`, regex anchors are dropped, and it begins with `/`."""
    route = _regex_groups(route)
    route = _CONVERTER.sub(r"{\1}", route)
    route = _TYPED.sub(r"{\1}", route)
    return route if route.startswith("/") else "/" + route


def _regex_groups(route: str) -> str:
    """Named groups of a regex route (Django's `re_path`) as `{name}`, unnamed ones as `{}`, the `^`, `$` and
    `\\Z` anchors dropped. A route that does not look like a regex (no anchor, no named group) is returned as
    it is."""
    if "^" not in route and "(?P<" not in route and not route.endswith(("$", "\\Z")):
        return route  # a path-style route: parentheses in it are literal
    out: list[str] = []
    i = 0
    n = len(route)
    while i < n:
        char = route[i]
        if char == "\\" and i + 1 < n:
            nxt = route[i + 1]
            if nxt == "Z":
                i += 2
                continue
            out.append(nxt if not nxt.isalnum() else route[i : i + 2])
            i += 2
        elif char in "^$":
            i += 1
        elif char == "(":
            end = _group_end(route, i)
            if route.startswith(_NAMED_GROUP, i):
                name_end = route.find(">", i)
                out.append("{" + route[i + len(_NAMED_GROUP) : name_end] + "}")
            elif route.startswith("(?:", i) or not route.startswith("(?", i):
                out.append("{}")
            i = end
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _group_end(route: str, start: int) -> int:
    """The index just past the group opened at `start` (parentheses balanced, escapes and classes skipped)."""
    depth = 0
    i = start
    in_class = False
    while i < len(route):
        char = route[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(route)


def scope_template(scope: MutableMapping[str, Any]) -> str | None:
    """The template a framework left in the scope, else None (no route matched, or not a known framework)."""
    route = scope.get(ROUTE)
    if isinstance(route, str):
        return route
    if "litestar_app" in scope:
        return _litestar_template(scope)
    return None


def scope_user(scope: MutableMapping[str, Any]) -> str | None:
    """The signed-in user's ID a framework hook left in the scope, or Litestar's `scope["user"]` (its `id`,
    else `pk`) when that object has no `is_authenticated` of its own (else the Starlette rules apply)."""
    user = scope.get(USER)
    if isinstance(user, str) and user:
        return user
    if "litestar_app" not in scope:
        return None
    found = scope.get("user")
    if found is None or hasattr(found, "is_authenticated"):
        return None
    for name in ("id", "pk"):
        value = getattr(found, name, None)
        if value is not None and value != "":
            return str(value)
    return None


def _litestar_template(scope: MutableMapping[str, Any]) -> str | None:
    template = scope.get("path_template")
    handler = scope.get("route_handler")
    if handler is None:  # no route matched, or one matched but not its method (a 405)
        return _litestar_unrouted(scope)
    if isinstance(template, str) and template:
        return brace_template(template)
    # A mounted ASGI app (`@asgi(..., is_mount=True)`): Litestar leaves no template; its route's path is one.
    for route in getattr(scope["litestar_app"], "routes", ()):
        if getattr(route, "route_handler", None) is handler:
            path = getattr(route, "path_format", None)
            if isinstance(path, str):
                return brace_template(path.rstrip("/") + "/{path}")
    return None


def _litestar_unrouted(scope: MutableMapping[str, Any]) -> str | None:
    """The template of a route whose path matched but not its method, found by routing once more with
    a method the route allows (Litestar's router says which ones in its 405); None for a path no route has."""
    router = getattr(scope["litestar_app"], "asgi_router", None)
    route = getattr(router, "handle_routing", None)
    path = scope.get("path")
    method = scope.get("method")
    if route is None or not isinstance(path, str) or not isinstance(method, str):
        return None
    root = scope.get("root_path", "")
    if root and isinstance(root, str):
        path = path.split(root, maxsplit=1)[-1]
    path = "/" + path.strip("/") if path not in ("", "/") else "/"
    try:
        route(path=path, method=method)
    except Exception as exc:
        allowed = getattr(exc, "headers", None) or {}
        allow = allowed.get("allow") if isinstance(allowed, dict) else None
        if not isinstance(allow, str) or not allow:
            return None
        try:
            template = route(path=path, method=allow.split(",")[0].strip())[4]
        except Exception:
            return None
        return brace_template(template) if isinstance(template, str) and template else None
    return None
