"""`CountingFilter`: a `logging.Filter` that counts matching records as events instead of logging them."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .stats import UsageStats

__all__ = ["CountingFilter"]


class CountingFilter(logging.Filter):
    """Drops log records whose message contains one of `patterns`, counting each as an event.

    The event is the pattern itself, in `category`. The Go package used this to turn TLS
    handshake noise into a count::

        logging.getLogger("uvicorn.error").addFilter(
            CountingFilter(stats, ["Invalid HTTP request received"], category="bad-req"))
    """

    def __init__(self, stats: UsageStats, patterns: Iterable[str], *, category: str = "log") -> None:
        super().__init__()
        self.stats = stats
        self.patterns = tuple(patterns)
        self.category = category

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        for pattern in self.patterns:
            if pattern in message:
                self.stats.count(pattern, self.category)
                return False
        return True
