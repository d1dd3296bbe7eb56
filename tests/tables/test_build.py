"""Building tables from stored rows: live days for averages, kinds, merged levels (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usage_stats.db.rows import LiveKeys, PeriodCounts, StoredDistinct
from usage_stats.periods import Calendar
from usage_stats.tables.build import build_table, live_days


@pytest.mark.parametrize(
    ("month", "go_live", "today", "days"),
    [
        (date(2026, 2, 1), date(2025, 1, 1), date(2026, 5, 1), 28),  # a full past month
        (date(2024, 2, 1), date(2023, 1, 1), date(2026, 5, 1), 29),  # leap year
        (date(2026, 2, 1), date(2026, 2, 20), date(2026, 5, 1), 9),  # go-live month: 20..28 Feb
        (date(2026, 5, 1), date(2025, 1, 1), date(2026, 5, 14), 13),  # current month: up to yesterday
        (date(2026, 5, 1), date(2025, 1, 1), date(2026, 5, 1), 0),  # first day of the month: none yet
        (date(2026, 5, 1), date(2026, 5, 10), date(2026, 5, 14), 4),  # live since the 10th, today excluded
        (date(2026, 4, 1), None, date(2026, 5, 14), 0),  # no go-live mark: no average
        (date(2026, 6, 1), date(2025, 1, 1), date(2026, 5, 14), 0),  # a month in the future
    ],
)
def test_live_days(month: date, go_live: date | None, today: date, days: int) -> None:
    assert live_days(month, go_live, today) == days


def test_month_table_merges_levels_and_averages_distinct_counts() -> None:
    cal = Calendar(ZoneInfo("Europe/Paris"), timedelta(hours=1))
    march = cal.day_start(date(2026, 3, 1))
    # the counts of March as the store reads them: each event once (stored month rows and rows of
    # days not rolled up yet summed), and the category's total apart
    counts = [
        PeriodCounts(march, "page", False, ["/b", "/a"], [1, 7]),
        PeriodCounts(march, "page", True, ["<all>"], [7]),
    ]
    stored = [StoredDistinct(cal.day_start(date(2026, 3, 2)), "user", 2, 10), StoredDistinct(march, "user", 3, 20)]
    live = [
        LiveKeys(date(2026, 3, 30), "user", 4),
        LiveKeys(date(2026, 3, 31), "user", 99),
    ]  # today's keys are left out
    table = build_table(
        "month", cal, counts, stored, live, go_live=date(2026, 3, 1), today=date(2026, 3, 31), minimum=0
    )
    (period,) = table.periods
    assert period.start == datetime(2026, 3, 1, tzinfo=ZoneInfo("Europe/Paris"))
    assert [(r.category, r.event, r.kind, r.value) for r in period.rows[:3]] == [
        ("page", "/a", "count", 7),  # value descending, then event: "/" sorts before "<"
        ("page", "<all>", "total", 7),
        ("page", "/b", "count", 1),
    ]
    assert period.rows[3][:3] == ("seen", "user", 34 / 30)
    assert period.rows[3].value == pytest.approx((10 + 20 + 4) / 30)


def test_day_table_shows_distinct_rows_and_filters_seen() -> None:
    cal = Calendar(ZoneInfo("UTC"), timedelta(hours=1))
    day = datetime(2026, 3, 2, tzinfo=UTC)
    stored = [StoredDistinct(day, "visitor", 2, 3)]
    live = [LiveKeys(date(2026, 3, 3), "visitor", 5)]
    table = build_table("day", cal, [], stored, live, go_live=None, today=date(2026, 3, 3))
    assert [(p.start.date(), p.rows[0].value, p.rows[0].kind) for p in table.periods] == [
        (date(2026, 3, 3), 5, "distinct"),
        (date(2026, 3, 2), 3, "distinct"),
    ]
    only_pages = build_table("day", cal, [], stored, live, go_live=None, today=date(2026, 3, 3), categories=["page"])
    assert only_pages.periods == ()
    assert (
        build_table("day", cal, [], stored, live, go_live=None, today=date(2026, 3, 3), minimum=4).total(
            "seen", "visitor"
        )
        == 5
    )


@given(st.lists(st.dictionaries(st.sampled_from(["/a", "/b", "/c", "/d"]), st.integers(0, 5)), min_size=1, max_size=4))
def test_the_parts_of_a_period_are_summed_per_event(parts: list[dict[str, int]]) -> None:
    """A period's stored rows and the sums of its finer rows (each part has an event once) come
    apart; an event in several parts is their sum, whatever the parts' order and sizes."""
    cal = Calendar(ZoneInfo("UTC"), timedelta(hours=1))
    march = cal.day_start(date(2026, 3, 1))
    counts = [PeriodCounts(march, "page", False, list(part), list(part.values())) for part in parts]
    table = build_table("month", cal, counts, [], [], go_live=None, today=date(2026, 4, 1))
    expected: dict[str, int] = {}
    for part in parts:
        for event, value in part.items():
            expected[event] = expected.get(event, 0) + value
    rows = [(r.event, r.value, r.kind) for p in table.periods for r in p.rows]
    assert rows == sorted(((e, v, "count") for e, v in expected.items()), key=lambda r: (-r[1], r[0]))
