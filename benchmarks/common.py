"""What the database benchmarks share: a fixed clock, the server to use and a timer."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

__all__ = ["Clock", "dsn", "timed"]


class Clock:
    """A clock that stays at `at` until moved (assign `at`)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


async def dsn() -> tuple[str, Any]:
    """`USAGE_STATS_TEST_DSN` (else `USAGE_STATS_DSN`), else the embedded server; and the server to
    release afterwards (None for one given by the environment)."""
    given = os.environ.get("USAGE_STATS_TEST_DSN") or os.environ.get("USAGE_STATS_DSN")
    if given:
        return given, None
    from usage_stats.embedded import start_embedded

    return await start_embedded()


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    """Seconds that awaiting `fn()` took."""
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start
