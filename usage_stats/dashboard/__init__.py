"""The mountable dashboard (see `UsageStats.dashboard`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import UsageStatsError

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from ..stats import UsageStats

__all__ = ["create_dashboard"]


def create_dashboard(stats: UsageStats, *, auth: Callable[..., Any] | None = None) -> ASGIApp:
    """Not built yet: the dashboard arrives with its own issue."""
    raise UsageStatsError("the dashboard is not available in this version")
