"""The exceptions raised by usage_stats, all rooted at :class:`UsageStatsError`."""

from __future__ import annotations

__all__ = ["ConfigError", "StoreUnavailableError", "UsageStatsError"]


class UsageStatsError(Exception):
    """The root of every exception that usage_stats raises on purpose."""


class ConfigError(UsageStatsError, ValueError):
    """A configuration value is invalid; the message names the field."""


class StoreUnavailableError(UsageStatsError):
    """PostgreSQL could not be reached or refused the work; pending counts were kept."""
