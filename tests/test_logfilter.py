"""`CountingFilter`: matching log records become counts instead of log lines."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import StatsFactory
from usage_stats import CountingFilter


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def logger() -> logging.Logger:
    log = logging.getLogger("tests.logfilter.noisy")
    log.propagate = False
    log.setLevel(logging.INFO)
    return log


async def test_matching_records_are_counted_not_logged(make_stats: StatsFactory, logger: logging.Logger) -> None:
    handler = Collect()
    logger.addHandler(handler)
    async with make_stats() as stats:
        counting = CountingFilter(stats, ["TLS handshake error", "Invalid HTTP request"], category="bad-req")
        logger.addFilter(counting)
        try:
            logger.info("TLS handshake error from %s", "192.0.2.1:5555")
            logger.warning("Invalid HTTP request received.")
            logger.info("server started on port %d", 8000)
            logger.info("tls handshake error (other case is not a match)")
            logger.info("TLS handshake error from %s", "192.0.2.2:5555")
        finally:
            logger.removeFilter(counting)
            logger.removeHandler(handler)
        await stats.flush()
        table = await stats.table("day")
    assert handler.messages == [
        "server started on port 8000",
        "tls handshake error (other case is not a match)",
    ]
    day = table.periods[0]
    assert [(r.category, r.event, r.value) for r in day.rows] == [
        ("bad-req", "TLS handshake error", 2),
        ("bad-req", "Invalid HTTP request", 1),
    ]


async def test_default_category_and_first_pattern_wins(make_stats: StatsFactory, logger: logging.Logger) -> None:
    async with make_stats() as stats:
        counting = CountingFilter(stats, ("error", "TLS error"))
        assert counting.filter(logger.makeRecord(logger.name, logging.INFO, "f", 1, "TLS error", (), None)) is False
        assert counting.filter(logger.makeRecord(logger.name, logging.INFO, "f", 1, "fine", (), None)) is True
        # a record whose message cannot be formatted is let through for logging to report
        bad = logger.makeRecord(logger.name, logging.INFO, "f", 1, "error %d", ("x",), None)
        assert counting.filter(bad) is True
        await stats.flush()
        table = await stats.table("day")
    assert [(r.category, r.event, r.value) for r in table.periods[0].rows] == [("log", "error", 1)]
