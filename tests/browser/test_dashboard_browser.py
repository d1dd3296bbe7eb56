"""A real browser on a real server: headless Chromium opens the example app's dashboard.

The example app runs in its own uvicorn process on a free loopback port, on the test's schema,
after three months of history were recorded on a driven clock. The test makes traffic, opens the
daily and monthly pages as the signed-in admin, checks the tables and each chart's bars against
`table()` read from the database, and saves a full-page screenshot (in the test's temporary folder,
and also in `USAGE_STATS_SCREENSHOT_DIR` when set: that is how docs/dashboard.png is made).
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, async_playwright

from tests.conftest import FakeClock, StatsFactory
from usage_stats import UsageConfig, UsageReader, UsageTable

from .chromium import chromium_or_skip

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Today's traffic, made by the test over HTTP.
TRAFFIC = [("GET", "/")] * 3 + [("GET", "/items/1")] * 4 + [("GET", "/items/2")] * 2 + [("GET", "/items/9")]
TRAFFIC += [("POST", "/items/1/buy")] * 2 + [("GET", "/account")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def example_server(history: None, pg_dsn: str, schema: str, tmp_path: Path) -> Iterator[str]:
    """`python -m example_app` on a free loopback port, on the test schema (after its history was
    recorded, so its go-live is months ago); yields its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("USAGE_STATS_")}
    env.update(PORT=str(port), USAGE_STATS_DSN=pg_dsn, USAGE_STATS_SCHEMA=schema, USAGE_STATS_FLUSH_INTERVAL="3600")
    log_path = tmp_path / "example_app.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "example_app"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 30
            while "Application startup complete." not in log_path.read_text(errors="replace"):
                assert proc.poll() is None, log_path.read_text(errors="replace")
                assert time.monotonic() < deadline, log_path.read_text(errors="replace")
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(30)


HISTORY_DAYS_AGO = [*range(1, 10), 33, 34, 40, 64, 65, 70, 95, 96]


def months_shown() -> int:
    """The months the month view shows: those of the history and of today (4 or 5, by the date)."""
    today = datetime.now(UTC).date()
    return len({(d.year, d.month) for d in [today, *(today - timedelta(days=n) for n in HISTORY_DAYS_AGO)]})


@pytest.fixture
async def history(make_stats: StatsFactory, clock: FakeClock) -> None:
    """A few busy days in each of the last three months and every day of the last nine, a deploy
    mark, and maintenance as the app would have run it (so the app has nothing left to do)."""
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    rng = random.Random(5)
    days = sorted({today - timedelta(days=d) for d in HISTORY_DAYS_AGO})
    clock.set(days[0] + timedelta(hours=9))
    async with make_stats(flush_interval=timedelta(hours=1)) as stats:  # as the app: same grace for day end
        for day in days:
            clock.set(day + timedelta(hours=9))
            weekend = day.weekday() >= 5
            visitors = rng.randint(25, 40) // (2 if weekend else 1)
            for v in range(visitors):
                stats.seen_visitor(f"10.{v}.{rng.randint(0, 9)}.1")
            for u in range(rng.randint(3, 9)):
                stats.seen_user(f"user{u}")
            stats.add("/", "page", visitors * 2 + rng.randint(0, 9))
            stats.add("/items/{item_id}", "page", visitors * 3 + rng.randint(0, 30))
            stats.add("/account", "page", rng.randint(5, 20))
            stats.add("purchase", "business", rng.randint(0, 6))
            stats.add("2xx", "status", visitors * 5)
            stats.add("4xx", "status", rng.randint(0, 5))
            await stats.flush()
            if day == today - timedelta(days=4):
                clock.set(day + timedelta(hours=15))
                await stats.mark("deploy 1.4")
        clock.set(now)
        await stats.maintain()


async def read_tables(pg_dsn: str, schema: str) -> dict[str, UsageTable]:
    config = UsageConfig(dsn=pg_dsn, schema=schema)
    async with UsageReader(config) as reader:
        return {p: await reader.table(p) for p in ("day", "month")}


def expected_bars(table: UsageTable) -> dict[str, int]:
    bars: dict[str, set[datetime]] = {}
    for period in table.periods:
        for row in period.rows:
            key = f"seen:{row.event}" if row.category == "seen" else row.category
            bars.setdefault(key, set()).add(period.start)
    return {key: len(starts) for key, starts in bars.items()}


async def page_tables(page: Page) -> list[Any]:
    found: list[Any] = await page.eval_on_selector_all(
        "article.period",
        """cards => cards.map(card => [card.dataset.start, [...card.querySelectorAll('tr[data-value]')].map(
            tr => [tr.dataset.category, tr.dataset.event, tr.dataset.kind, tr.dataset.value])])""",
    )
    return found


async def page_bars(page: Page) -> dict[str, int]:
    found: dict[str, int] = await page.eval_on_selector_all(
        "figure[data-series]",
        """figs => Object.fromEntries(figs.map(f => [f.dataset.series, f.querySelectorAll('svg rect.bar').length]))""",
    )
    return found


@pytest.fixture
def chromium() -> str:
    """Debian's Chromium; missing, the test is skipped, or fails under `.ci/run` (see `chromium.py`)."""
    return chromium_or_skip()


async def test_dashboard_in_a_real_browser(
    chromium: str, example_server: str, pg_dsn: str, schema: str, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=example_server, cookies={"user": "alice"}) as client:
        for method, path in TRAFFIC:
            await client.request(method, path)
        assert (await client.get("/usage/day")).status_code == 403  # signed in, but not the admin
        await client.get("/stats")  # the example's own page flushes (the app's interval is an hour)
    tables = await read_tables(pg_dsn, schema)
    today = tables["day"].periods[0]
    assert today.get("page", "/items/{item_id}") is not None
    assert today.get("page", "/items/{item_id}").value == 7  # type: ignore[union-attr]  # 404s match the route too

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1320, "height": 900}, device_scale_factor=1)
            await context.add_cookies([{"name": "user", "value": "admin", "url": example_server}])
            page = await context.new_page()
            errors: list[str] = []
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            shots = {}
            for period, heading in (("month", "Monthly usage"), ("day", "Daily usage")):
                response = await page.goto(f"{example_server}/usage/{period}")
                assert response is not None
                assert response.status == 200
                assert await page.inner_text("h1") == heading
                table = (await read_tables(pg_dsn, schema))[period]
                assert await page_tables(page) == [
                    [p.start.isoformat(), [[r.category, r.event, r.kind, repr(r.value)] for r in p.rows]]
                    for p in table.periods
                ]
                bars = await page_bars(page)
                assert bars == expected_bars(table)
                assert bars["page"] == (len(table.periods) if period == "day" else months_shown())
                assert await page.locator("li[data-mark] strong").all_inner_texts() == ["go-live", "deploy 1.4"]
                shots[period] = tmp_path / f"dashboard-{period}.png"
                await page.screenshot(path=str(shots[period]), full_page=True)
            assert await page.locator("figure[data-series=page] g.mark").count() == 1  # the deploy, on the day axis
            assert errors == []  # no blocked asset or script on the page
            await context.close()
        finally:
            await browser.close()
    async with httpx.AsyncClient(base_url=example_server) as client:
        await client.get("/stats")  # flush what the app counted while the browser looked
    today_after = (await read_tables(pg_dsn, schema))["day"].periods[0]
    assert not [row for row in today_after.rows if "usage" in row.event]  # the dashboard is never counted
    assert today_after.get("bad-req", "not-found") is None
    # /stats flushes before its own request is counted: only the first /stats was added since
    assert today_after.get("page", "/stats").value == 1  # type: ignore[union-attr]
    assert today_after.get("status", "2xx").value == today.get("status", "2xx").value + 1  # type: ignore[union-attr]
    assert shots["day"].stat().st_size > 10_000
    target = os.environ.get("USAGE_STATS_SCREENSHOT_DIR")
    if target:
        for period, shot in shots.items():
            name = "dashboard.png" if period == "day" else f"dashboard-{period}.png"
            (Path(target) / name).write_bytes(shot.read_bytes())
