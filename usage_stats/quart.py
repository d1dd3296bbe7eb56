"""Quart: `install(app)` tells `UsageMiddleware` the route template (and, through a callable, the user).

Quart matches routes inside the app, so the outer `UsageMiddleware` cannot see the rule; a hook puts it
into the ASGI scope::

    usage_stats.quart.install(app, user_id=lambda: session.get("user_id"))
    app.asgi_app = UsageMiddleware(app.asgi_app, stats=stats)

The template is `request.url_rule.rule` with the blueprint prefix, `<int:id>` as `{id}`; a path whose
rule does not take the method (a 405) counts under that rule. It never changes the response.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, MutableMapping
from typing import Any, cast

from quart import Quart, Response, request
from werkzeug.exceptions import MethodNotAllowed

from .frameworks import ROUTE, USER, brace_template

__all__ = ["install"]

logger = logging.getLogger(__name__)

UserId = Callable[[], Any]  # called in the request context (`session`, `g`); may be async; None: no user


def install(app: Quart, *, user_id: UserId | None = None) -> None:
    """Add the hooks to `app`: one that runs first among its `before_request` functions and puts the
    matched rule into the scope, and, with `user_id`, an `after_request` one that puts its result (the
    signed-in user's ID, or None) there too."""
    hooks = _Hooks(app, user_id)
    app.before_request_funcs.setdefault(None, []).insert(0, hooks.route)  # before any hook that may answer
    if user_id is not None:
        app.after_request(hooks.user)


class _Hooks:
    def __init__(self, app: Quart, user_id: UserId | None) -> None:
        self.app = app
        self.user_id = user_id
        self.failed = False

    async def route(self) -> None:
        try:
            rule = request.url_rule
            if rule is None and isinstance(request.routing_exception, MethodNotAllowed):
                rule = self._rule_of_other_method(request.routing_exception)
            if rule is not None:
                _scope()[ROUTE] = brace_template(rule.rule)
        except Exception:
            self._log()

    async def user(self, response: Response) -> Response:
        try:
            found = self.user_id() if self.user_id is not None else None
            if inspect.isawaitable(found):
                found = await found
            if found is not None and found != "":
                _scope()[USER] = str(found)
        except Exception:
            self._log()
        return response

    def _rule_of_other_method(self, error: MethodNotAllowed) -> Any:
        """The rule of the path for a method it allows (the request's own method matched no rule)."""
        methods = list(error.valid_methods or ())
        adapter = self.app.create_url_adapter(request)
        if not methods or adapter is None:
            return None
        return adapter.match(method=methods[0], return_rule=True)[0]

    def _log(self) -> None:
        if not self.failed:  # once per app: the request itself was not affected
            self.failed = True
            logger.warning("usage_stats: could not read a Quart request's route or user", exc_info=True)


def _scope() -> MutableMapping[str, Any]:
    """The request's ASGI scope: the very dict the outer `UsageMiddleware` reads after the app answered."""
    return cast("MutableMapping[str, Any]", request.scope)
