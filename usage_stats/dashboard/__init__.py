"""The mountable dashboard (see `UsageStats.dashboard`): daily and monthly tables, a chart per
category, the marks, and CSV/JSON downloads, as server-rendered HTML and SVG with no script.

::

    app.mount("/usage", stats.dashboard(auth=lambda request: request.user.is_authenticated))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .app import build_app
from .auth import Guard

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from ..hooks import DashboardAuth
    from ..stats import UsageStats

__all__ = ["create_dashboard"]


def create_dashboard(stats: UsageStats, *, auth: DashboardAuth | None = None) -> ASGIApp:
    """The dashboard app for `stats`, refusing every request that `auth` does not allow.

    `auth(request)` may be sync or async; a true result allows the request, a false one answers
    403, and a Starlette `Response` is sent as it is (for example a 401 asking for credentials).
    Without `auth` every request is refused. The dashboard's own requests are never counted.
    """
    return Guard(build_app(stats), auth)
