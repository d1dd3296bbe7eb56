"""`UsageTable`: ordering, minimum, and the CSV/JSON/dict exports (pure)."""

from __future__ import annotations

import copy
import csv
import io
import json
import pickle
from dataclasses import FrozenInstanceError
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usage_stats import Period, Row, UsageTable
from usage_stats.tables.model import Kind, sorted_group

LONDON = ZoneInfo("Europe/London")
D1 = datetime(2026, 7, 1, tzinfo=LONDON)
D2 = datetime(2026, 7, 2, tzinfo=LONDON)


def sample() -> UsageTable:
    rows = [
        (D1, Row("page", "/b", 5)),
        (D1, Row("page", "/a", 5)),
        (D1, Row("page", "/c", 9)),
        (D1, Row("api", "/z", 1)),
        (D1, Row("status", "2xx", 20)),
        (D1, Row("seen", "visitor", 3, "distinct")),
        (D1, Row("seen", "user", 7, "distinct")),
        (D2, Row("page", "/a", 1)),
        (D2, Row("api", "<all>", 2, "total")),
    ]
    return UsageTable.build("day", rows)


def test_periods_newest_first_rows_by_category_value_desc_event() -> None:
    t = sample()
    assert [p.start for p in t.periods] == [D2, D1]
    assert [(r.category, r.event, r.value) for r in t.periods[1].rows] == [
        ("api", "/z", 1),
        ("page", "/c", 9),
        ("page", "/a", 5),
        ("page", "/b", 5),
        ("seen", "user", 7),
        ("seen", "visitor", 3),
        ("status", "2xx", 20),
    ]
    assert [r.event for r in t.periods[0].rows] == ["<all>", "/a"]


def test_minimum_drops_rows_and_empty_periods() -> None:
    rows = [(D1, Row("page", "/a", 5)), (D1, Row("page", "/b", 1)), (D2, Row("page", "/a", 1))]
    t = UsageTable.build("day", rows, minimum=2)
    assert len(t.periods) == 1
    assert t.periods[0].start == D1
    assert t.periods[0].rows == (Row("page", "/a", 5),)
    assert UsageTable.build("day", rows, minimum=100).periods == ()


def test_period_get_and_total() -> None:
    t = sample()
    p = t.periods[1]
    assert p.get("page", "/c") == Row("page", "/c", 9)
    assert p.get("seen", "user", "distinct") == Row("seen", "user", 7, "distinct")
    assert p.get("seen", "user", "average") is None
    assert p.get("nope", "x") is None
    assert t.total("page", "/a") == 6
    assert Period(D1).rows == ()


def test_as_dicts() -> None:
    dicts = sample().as_dicts()
    assert dicts[0] == {
        "start": "2026-07-02T00:00:00+01:00",
        "category": "api",
        "event": "<all>",
        "kind": "total",
        "value": 2,
    }
    assert len(dicts) == 9
    assert {d["kind"] for d in dicts} == {"count", "total", "distinct"}


def test_to_json_round_trips() -> None:
    t = sample()
    data = json.loads(t.to_json())
    assert data == {"period": "day", "rows": t.as_dicts()}


def test_to_csv_has_a_header_and_every_row() -> None:
    t = sample()
    parsed = list(csv.reader(io.StringIO(t.to_csv())))
    assert parsed[0] == ["start", "category", "event", "kind", "value"]
    assert parsed[1] == ["2026-07-02T00:00:00+01:00", "api", "<all>", "total", "2"]
    assert len(parsed) == 10


def test_csv_quotes_formula_cells_and_keeps_odd_names_intact() -> None:
    rows = [(D1, Row("page", "=HYPERLINK(1)", 1)), (D1, Row("page", 'a,"b"\nc', 2)), (D1, Row("page", "-x", 3))]
    parsed = list(csv.reader(io.StringIO(UsageTable.build("day", rows).to_csv())))
    events = [r[2] for r in parsed[1:]]
    assert events == ["'-x", 'a,"b"\nc', "'=HYPERLINK(1)"]


def test_average_values_are_floats_in_json() -> None:
    t = UsageTable.build("month", [(D1, Row("seen", "user", 2.5, "average"))])
    assert json.loads(t.to_json())["rows"][0]["value"] == 2.5


def test_a_period_of_columns_equals_the_period_of_its_rows() -> None:
    groups = [
        sorted_group("api", ["/z"], [1], ["count"]),
        sorted_group("page", ["/b", "/a", "/c", "/d"], [5, 5, 9, 1], ["count"] * 4, minimum=2),
    ]
    period = Period.from_groups(D1, groups)
    rows = (Row("api", "/z", 1), Row("page", "/c", 9), Row("page", "/a", 5), Row("page", "/b", 5))
    assert period.rows == rows  # value descending, then event; below the minimum dropped
    assert all(type(r) is Row for r in period.rows)
    assert period == Period(D1, rows)
    assert hash(period) == hash(Period(D1, rows))
    assert Period(D1, rows).groups == period.groups
    assert period.get("page", "/a") == Row("page", "/a", 5)
    assert copy.deepcopy(period) == pickle.loads(pickle.dumps(period)) == period
    with pytest.raises(FrozenInstanceError):
        period.start = D2


_EVENTS = st.text(alphabet="ab/é\x00z", max_size=3)


@given(
    st.lists(st.tuples(_EVENTS, st.one_of(st.integers(-3, 3), st.floats(-3, 3, allow_nan=False))), max_size=40),
    st.booleans(),
    st.sampled_from([0, 1, 2.5]),
)
def test_a_group_is_in_display_order_whatever_order_its_columns_come_in(
    rows: list[tuple[str, float]], presorted: bool, minimum: float
) -> None:
    """Value descending, then event (code point order), rows below `minimum` dropped, each row's kind
    kept with it; columns that come in display order already, or with ties out of order, included."""
    rows = list(dict(rows).items())  # an event once, as the store sends it
    if presorted:
        rows.sort(key=lambda r: -r[1])  # by value only: ties may still be out of event order
    kinds: list[Kind] = [("count", "total", "average")[len(e) % 3] for e, _ in rows]
    group = sorted_group("c", [e for e, _ in rows], [v for _, v in rows], kinds, minimum=minimum)
    by_event = dict(zip((e for e, _ in rows), kinds, strict=True))
    expected = sorted(((e, v) for e, v in rows if not minimum or v >= minimum), key=lambda r: (-r[1], r[0]))
    assert list(zip(group.events, group.values, strict=True)) == expected
    assert list(group.kinds) == [by_event[e] for e, _ in expected]
