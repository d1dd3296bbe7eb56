"""Privacy-preserving usage statistics for ASGI services (Starlette, FastAPI), kept in PostgreSQL.

::

    from usage_stats import UsageConfig, UsageMiddleware, UsageStats

    stats = UsageStats(UsageConfig.from_env())
    app = FastAPI(lifespan=stats.lifespan)
    app.add_middleware(UsageMiddleware, stats=stats)
"""

from __future__ import annotations

from .config import UsageConfig
from .errors import ConfigError, StoreUnavailableError, UsageStatsError
from .hooks import BeforeFlush, Categoriser, Clock, DashboardAuth, EventNamer, UserIdentifier
from .identity import bearer_token
from .logfilter import CountingFilter
from .middleware import UsageMiddleware
from .stats import UsageStats
from .tables import Mark, Period, Row, UsageReader, UsageTable

__all__ = [
    "BeforeFlush",
    "Categoriser",
    "Clock",
    "ConfigError",
    "CountingFilter",
    "DashboardAuth",
    "EventNamer",
    "Mark",
    "Period",
    "Row",
    "StoreUnavailableError",
    "UsageConfig",
    "UsageMiddleware",
    "UsageReader",
    "UsageStats",
    "UsageStatsError",
    "UsageTable",
    "UserIdentifier",
    "bearer_token",
]

__version__ = "0.1.0"
