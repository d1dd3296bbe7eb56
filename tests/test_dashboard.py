"""The dashboard against real data: pages, charts and downloads equal `table()`; auth; escaping."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from tests.conftest import FakeClock, StatsFactory
from usage_stats import Period, Row, StoreUnavailableError, UsageMiddleware, UsageStats, UsageTable
from usage_stats.dashboard.charts import Series, axis_ticks, render_chart
from usage_stats.dashboard.model import timeline
from usage_stats.periods import Calendar

ROUTES = ["/usage/", "/usage/day", "/usage/month", "/usage/day.csv", "/usage/day.json", "/usage/month.csv"]
ROUTES += ["/usage/month.json", "/usage/no-such-page", "/usage/day?minimum=oops"]


class PageParser(HTMLParser):
    """Collects the period tables (rows by their data- attributes) and the bars of each chart."""

    def __init__(self) -> None:
        super().__init__()
        self.periods: list[tuple[str, list[tuple[str, str, str, str]]]] = []
        self.bars: dict[str, int] = {}
        self.marks_drawn: dict[str, int] = {}
        self.marks_listed: list[str] = []
        self._series: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "article" and "data-start" in a:
            self.periods.append((a["data-start"], []))
        elif tag == "tr" and "data-value" in a:
            row = (a["data-category"], a["data-event"], a["data-kind"], a["data-value"])
            self.periods[-1][1].append(row)
        elif tag == "svg" and "data-series" in a:
            self._series = a["data-series"]
            self.bars[self._series] = 0
            self.marks_drawn[self._series] = 0
        elif tag == "rect" and "bar" in a.get("class", "").split() and self._series is not None:
            self.bars[self._series] += 1
        elif tag == "g" and a.get("class") == "mark" and self._series is not None:
            self.marks_drawn[self._series] += 1
        elif tag == "li" and "data-mark" in a:
            self.marks_listed.append(a["data-mark"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._series = None


def parse(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    return parser


def table_rows(table: UsageTable) -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    return [
        (p.start.isoformat(), [(r.category, r.event, r.kind, repr(r.value)) for r in p.rows]) for p in table.periods
    ]


def expected_bars(table: UsageTable, first: datetime) -> dict[str, int]:
    """Bars per chart: the periods (within the chart's range) in which the series has a value."""
    bars: dict[str, set[datetime]] = {}
    for period in table.periods:
        if period.start < first:
            continue
        for row in period.rows:
            key = f"seen:{row.event}" if row.category == "seen" else row.category
            bars.setdefault(key, set()).add(period.start)
    return {key: len(starts) for key, starts in bars.items()}


def host_app(stats: UsageStats, auth: Callable[..., Any] | None) -> Starlette:
    async def item(request: Request) -> Response:
        return PlainTextResponse("item")

    app = Starlette(
        routes=[Route("/items/{item_id}", item), Mount("/usage", app=stats.dashboard(auth=auth))],
    )
    app.add_middleware(UsageMiddleware, stats=stats)
    return app


def client_for(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def allow(request: Request) -> bool:
    return True


@pytest.fixture
async def seeded(make_stats: StatsFactory, clock: FakeClock) -> AsyncIterator[UsageStats]:
    """Four days of traffic over two months (a day without any in between), a deploy mark, and
    maintenance run for the ended days, so the tables merge rolled-up and recent rows."""
    clock.set(datetime(2026, 2, 27, 10, 0, tzinfo=UTC))
    async with make_stats() as stats:
        for month, day, hits in ((2, 27, 3), (2, 28, 5), (3, 2, 2), (3, 3, 7)):  # nothing on 1 March
            clock.set(datetime(2026, month, day, 10, 0, tzinfo=UTC))
            for i in range(hits):
                stats.count("/items/{item_id}", "page")
                stats.seen_visitor(f"192.0.{i % 3}.1")
            stats.count("/", "page")
            stats.count("purchase", "business")
            stats.seen_user("alice")
            await stats.flush()
            if day == 2:
                await stats.mark("deploy 2")
        await stats.maintain()
        yield stats


@pytest.mark.parametrize("period", ["day", "month"])
async def test_page_shows_exactly_the_table_with_a_bar_per_period(seeded: UsageStats, period: str) -> None:
    async with client_for(host_app(seeded, allow)) as client:
        response = await client.get(f"/usage/{period}")
    assert response.status_code == 200
    table = await seeded.table(period)
    page = parse(response.text)
    assert page.periods == table_rows(table)
    assert len(table.periods) == (4 if period == "day" else 2)
    assert page.bars == expected_bars(table, table.periods[-1].start)
    assert page.bars["page"] == len(table.periods)
    assert page.marks_listed == ["go-live", "deploy 2"]
    assert set(page.marks_drawn.values()) == {2}  # both marks fall inside every chart's axis
    # the shown figures are the table's, formatted
    first = table.periods[0].get("page", "/items/{item_id}")
    assert first is not None
    assert f'<td class="num">{first.value:,}</td>' in response.text


async def test_filters_and_downloads_equal_the_table(seeded: UsageStats) -> None:
    async with client_for(host_app(seeded, allow)) as client:
        page = await client.get("/usage/day", params={"category": "page", "minimum": "3"})
        csv_response = await client.get("/usage/day.csv", params={"category": "page", "minimum": "3"})
        json_response = await client.get("/usage/month.json")
        all_csv = await client.get("/usage/month.csv")
    filtered = await seeded.table("day", categories=["page"], minimum=3)
    assert parse(page.text).periods == table_rows(filtered)
    assert {r.category for p in filtered.periods for r in p.rows} == {"page"}
    assert csv_response.text == filtered.to_csv()
    assert csv_response.headers["content-type"].startswith("text/csv")
    assert 'filename="usage-day.csv"' in csv_response.headers["content-disposition"]
    month = await seeded.table("month")
    assert json_response.json() == json.loads(month.to_json())
    assert all_csv.text == month.to_csv()
    # the download links on the page keep the filter
    assert "/usage/day.csv?category=page&amp;minimum=3" in page.text


@pytest.mark.parametrize("auth", ["missing", "sync", "async", "response"])
async def test_every_route_refuses_without_permission(
    seeded: UsageStats, db: asyncpg.Connection, schema: str, auth: str
) -> None:
    async def async_deny(request: Request) -> bool:
        return False

    def challenge(request: Request) -> Response:
        return PlainTextResponse("sign in", status_code=401, headers={"WWW-Authenticate": 'Basic realm="usage"'})

    rule = {"missing": None, "sync": lambda request: False, "async": async_deny, "response": challenge}[auth]
    before = await db.fetchval(f'SELECT coalesce(sum(value), 0) FROM "{schema}".counts')
    async with client_for(host_app(seeded, rule)) as client:
        for route in ROUTES:
            response = await client.get(route)
            assert response.status_code == (401 if auth == "response" else 403), route
            assert "/items/" not in response.text
            assert "deploy" not in response.text
    await seeded.flush()
    assert await db.fetchval(f'SELECT coalesce(sum(value), 0) FROM "{schema}".counts') == before


async def test_dashboard_requests_are_not_counted(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str
) -> None:
    seen: list[str] = []

    async def check(request: Request) -> bool:
        seen.append(request.url.path)
        return request.headers.get("x-admin") == "yes"

    async with make_stats() as stats:
        async with client_for(host_app(stats, check)) as client:
            await client.get("/items/1")
            for path in ("/usage/day", "/usage/month.csv", "/usage/"):
                assert (await client.get(path, headers={"x-admin": "yes"})).status_code in (200, 307)
            assert (await client.get("/usage/day")).status_code == 403
        await stats.flush()
    rows = await db.fetch(f'SELECT category, event, value FROM "{schema}".counts ORDER BY 1, 2')
    assert [tuple(r) for r in rows] == [("page", "/items/{item_id}", 1), ("status", "2xx", 1)]
    assert seen == ["/usage/day", "/usage/month.csv", "/usage/", "/usage/day"]


async def test_hostile_names_are_escaped(make_stats: StatsFactory) -> None:
    evil = '<script>alert("x")</script>'
    async with make_stats() as stats:
        stats.count(evil, "<b>cat</b>")
        stats.count("/ok", '"><img src=x onerror=alert(1)>')
        await stats.mark(f"{evil} deploy")
        await stats.flush()
        async with client_for(host_app(stats, allow)) as client:
            response = await client.get("/usage/day")
            filtered = await client.get("/usage/day", params={"category": evil})
        table = await stats.table("day")
    assert response.status_code == 200
    for text in (response.text, filtered.text):
        for raw in ("<script>", "<img", "<b>cat"):
            assert raw not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in response.text
    assert parse(response.text).periods == table_rows(table)
    assert parse(response.text).marks_listed == ["go-live", f"{evil} deploy"]


async def test_csv_download_neutralises_formulas(make_stats: StatsFactory) -> None:
    async with make_stats() as stats:
        for name in ('=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1)", "plain"):
            stats.count(name, "=cmd")
        await stats.flush()
        async with client_for(host_app(stats, allow)) as client:
            response = await client.get("/usage/day.csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["start", "category", "event", "kind", "value"]
    events = {row[2] for row in rows[1:]}
    assert events == {'\'=HYPERLINK("http://x")', "'+1+1", "'-2", "'@SUM(A1)", "plain"}
    assert {row[1] for row in rows[1:]} == {"'=cmd"}
    assert all(row[4] == "1" for row in rows[1:])


async def test_empty_and_bad_filters(make_stats: StatsFactory) -> None:
    async with make_stats() as stats:
        async with client_for(host_app(stats, allow)) as client:
            empty = await client.get("/usage/month")
            bad = await client.get("/usage/day", params={"minimum": "-1"})
            nan = await client.get("/usage/day.json", params={"minimum": "nan"})
            index = await client.get("/usage/?category=page")
        assert (await stats.table("month")).periods == ()
    assert empty.status_code == 200
    assert "No figures yet" in empty.text
    assert bad.status_code == 400
    assert "zero or more" in bad.text
    assert nan.status_code == 400
    assert index.status_code == 307
    assert index.headers["location"] == "/usage/day?category=page"
    assert empty.headers["cache-control"] == "no-store"
    assert "script-src" not in empty.headers["content-security-policy"]  # default-src 'none' forbids scripts


async def test_unavailable_statistics_answer_503(make_stats: StatsFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    stats = make_stats()
    async with client_for(host_app(stats, allow)) as client:
        not_started = await client.get("/usage/day")
        async with stats:

            async def outage(*args: object, **kwargs: object) -> UsageTable:
                raise StoreUnavailableError("connection refused")

            monkeypatch.setattr(stats, "table", outage)
            down = await client.get("/usage/month.csv")
    assert not_started.status_code == 503
    assert "Statistics not running" in not_started.text
    assert down.status_code == 503
    assert "Database unavailable" in down.text


def test_chart_bars_gaps_and_marks() -> None:
    cal = Calendar(ZoneInfo("UTC"), timedelta(hours=1))
    days = [cal.day_start(datetime(2026, 3, d).date()) for d in range(1, 6)]
    series = Series("page", "page: events per day", "events", {days[0]: 4, days[2]: 10, days[3]: 0})
    svg = render_chart(
        series,
        days,
        [(1, "deploy", datetime(2026, 3, 2, 12, tzinfo=UTC)), (2, "later", datetime(2026, 4, 1, tzinfo=UTC))],
        label=lambda d: d.strftime("%d"),
        number=str,
    )
    assert svg.count('class="bar"') == 3  # 4 slots, one without a value
    assert svg.count('class="mark"') == 1  # the April mark is off the axis
    assert "<title>03: 10 events</title>" in svg
    assert axis_ticks(9, whole=True) == [0, 2, 4, 6, 8, 10]
    assert axis_ticks(170, whole=True) == [0, 50, 100, 150, 200]
    assert axis_ticks(1, whole=True) == [0, 1]
    assert axis_ticks(0) == [0, 1]
    assert axis_ticks(0.3) == pytest.approx([0, 0.1, 0.2, 0.3])
    assert axis_ticks(2.5) == pytest.approx([0, 0.5, 1, 1.5, 2, 2.5])


def test_timeline_is_contiguous_across_dst_and_bounded() -> None:
    zone = ZoneInfo("Europe/London")
    cal = Calendar(zone, timedelta(hours=1))
    starts = [cal.day_start(datetime(2026, 3, d).date()) for d in (27, 30)]
    table = UsageTable("day", tuple(Period(s, (Row("page", "/", 1),)) for s in reversed(starts)))
    bounds = timeline(cal, "day", table, starts[-1])
    assert [b.day for b in bounds] == [27, 28, 29, 30, 31]
    assert bounds[3].timestamp() - bounds[2].timestamp() == 23 * 3600  # the day the clocks go forward
    long = UsageTable(
        "day", (Period(cal.day_start(datetime(2026, 3, 30).date())), Period(starts[0] - timedelta(days=400)))
    )
    assert len(timeline(cal, "day", long, starts[-1])) == 62 + 1
