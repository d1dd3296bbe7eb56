"""The maintenance plan: which days are due when, and with what retention (one rule for the service and the CLI)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from usage_stats import UsageConfig
from usage_stats.db.maintenance import Retention, grace, plan
from usage_stats.periods import Calendar


def test_a_day_is_due_once_it_ended_grace_ago() -> None:
    config = UsageConfig(timezone="Pacific/Auckland", flush_interval=timedelta(hours=1), keep_days=9)
    cal = Calendar(ZoneInfo("Pacific/Auckland"), config.base_period)
    assert grace(config) == timedelta(hours=2)  # twice the flush interval
    due = cal.day_start(date(2026, 3, 3)) + timedelta(hours=2)  # 2 March ended two hours ago
    assert plan(config, cal, due.timestamp()).last_ended == date(2026, 3, 2)
    assert plan(config, cal, due.timestamp() - 1).last_ended == date(2026, 3, 1)
    assert plan(config, cal, due.timestamp()).retention == Retention(
        config.keep_base_days, 9, config.keep_event_months, config.keep_months
    )


def test_the_grace_is_at_least_ten_minutes() -> None:
    config = UsageConfig(flush_interval=timedelta(seconds=30))
    cal = Calendar(ZoneInfo("UTC"), config.base_period)
    assert grace(config) == timedelta(minutes=10)
    midnight = datetime(2026, 5, 2, tzinfo=UTC).timestamp()
    assert plan(config, cal, midnight + 599).last_ended == date(2026, 4, 30)
    assert plan(config, cal, midnight + 600).last_ended == date(2026, 5, 1)
