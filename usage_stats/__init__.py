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
from .identity import bearer_token
from .logfilter import CountingFilter
from .middleware import UsageMiddleware
from .stats import UsageStats
from .tables import Mark, Period, Row, UsageReader, UsageTable

__all__ = [
    "ConfigError",
    "CountingFilter",
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
    "bearer_token",
]

__version__ = "0.1.0"
