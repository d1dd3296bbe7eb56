"""The `usage-stats` command line against real PostgreSQL: every command and format, and the errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import anyio.to_thread
import asyncpg
import pytest

from tests.conftest import FakeClock, StatsFactory
from usage_stats import ConfigError
from usage_stats.cli import main
from usage_stats.db.migrations import MIGRATIONS
from usage_stats.tables.formats import render_text

BAD_DSN = "postgresql://someone:s3cret@127.0.0.1:1/nothing"
# The CLI's "now" in these tests: five minutes after a UTC midnight, inside maintenance's 10-minute grace,
# where reading the real clock made the expected dates depend on when the tests ran.
NOW = datetime(2026, 3, 10, 0, 5, tzinfo=UTC)


async def run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the CLI at `NOW` in a worker thread (it runs its own event loop); returns (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        return main(list(argv), stdout=out, stderr=err, clock=lambda: NOW)

    if env is None:
        status = await anyio.to_thread.run_sync(call)
    else:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            status = await anyio.to_thread.run_sync(call)
    return status, out.getvalue(), err.getvalue()


def target(pg_dsn: str, schema: str) -> list[str]:
    return ["--dsn", pg_dsn, "--schema", schema]


async def seed_days(make_stats: StatsFactory, clock: FakeClock) -> None:
    """Three days of counts (the last one the day before `NOW`'s) and visitors, not maintained."""
    clock.set(NOW.replace(hour=12, minute=0) - timedelta(days=4))
    async with make_stats() as stats:
        for n in (2, 5, 3):
            clock.advance(days=1)
            stats.add("/items/{item_id}", "page", n)
            stats.count("/", "page")
            stats.count("=cmd|' /C calc'!A0", "business")
            stats.seen_visitor(f"198.51.100.{n}")
            await stats.flush()


@pytest.mark.parametrize("period", ["day", "month", "base"])
async def test_report_in_every_format_equals_the_table(
    make_stats: StatsFactory, clock: FakeClock, pg_dsn: str, schema: str, period: str
) -> None:
    clock.set(NOW)
    async with make_stats() as stats:  # the CLI's time too
        stats.add("/items/{item_id}", "page", 12)
        stats.count("purchase", "business")
        stats.seen_user("alice")
        await stats.flush()
        results = {
            fmt: await run(*target(pg_dsn, schema), "report", "--period", period, "--format", fmt)
            for fmt in ("text", "csv", "json")
        }
        table = await stats.table(period)
    assert {status for status, _, _ in results.values()} == {0}
    assert {err for _, _, err in results.values()} == {""}
    assert results["csv"][1] == table.to_csv()
    assert json.loads(results["json"][1]) == json.loads(table.to_json())
    assert results["text"][1] == render_text(table)
    assert table.total("page", "/items/{item_id}") == 12


async def test_text_report_is_aligned_and_safe(
    make_stats: StatsFactory, clock: FakeClock, pg_dsn: str, schema: str
) -> None:
    clock.set(NOW)
    async with make_stats() as stats:
        stats.count("/a-very-long-event-name/{with}/{params}", "page")
        stats.add("/", "page", 12345)
        stats.count("\x1b[31mred\x1b[0m", "business")
        await stats.flush()
    status, out, _ = await run(*target(pg_dsn, schema), "report")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["PERIOD", "CATEGORY", "EVENT", "VALUE", "KIND"]
    value_end = lines[0].index("VALUE") + len("VALUE")
    assert [line[value_end - 5 : value_end].strip() for line in lines[1:]] == ["1", "12345", "1"]
    kind_start = lines[0].index("KIND")
    assert [line[kind_start:] for line in lines[1:]] == ["count"] * 3
    assert "\x1b" not in out
    assert "\\x1b[31mred\\x1b[0m" in out


async def test_report_filters(make_stats: StatsFactory, clock: FakeClock, pg_dsn: str, schema: str) -> None:
    await seed_days(make_stats, clock)
    since = (NOW - timedelta(days=2)).date().isoformat()
    args = [*target(pg_dsn, schema), "report", "--format", "json"]
    _, everything, _ = await run(*args)
    _, recent, _ = await run(*args, "--since", since)
    _, big, _ = await run(*args, "--minimum", "3", "--category", "page")
    clock.set(NOW)
    async with make_stats() as stats:
        start = datetime.fromisoformat(since).replace(tzinfo=UTC)
        assert json.loads(recent) == json.loads((await stats.table("day", start=start)).to_json())
        assert json.loads(big) == json.loads((await stats.table("day", minimum=3, categories=["page"])).to_json())
        assert json.loads(everything) == json.loads((await stats.table("day")).to_json())
    assert len({row["start"] for row in json.loads(everything)["rows"]}) == 3
    assert len({row["start"] for row in json.loads(recent)["rows"]}) == 2
    assert {(row["event"], row["value"]) for row in json.loads(big)["rows"]} == {
        ("/items/{item_id}", 5),
        ("/items/{item_id}", 3),
    }


async def test_report_only_reads(
    make_stats: StatsFactory, clock: FakeClock, pg_dsn: str, schema: str, db: asyncpg.Connection
) -> None:
    status, _, err = await run(*target(pg_dsn, schema), "report")
    assert status == 1
    assert "holds no usage statistics" in err
    assert await db.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema) == 0  # not migrated
    await seed_days(make_stats, clock)
    await db.execute(f'DELETE FROM "{schema}".marks')  # no go-live: a report must not add one
    before = await snapshot(db, schema)
    for period in ("day", "month", "base"):
        assert (await run(*target(pg_dsn, schema), "report", "--period", period))[0] == 0
    assert await snapshot(db, schema) == before
    assert before["marks"] == []
    assert len(before["seen_keys"]) == 3  # days left for maintenance, which a report must not run


async def snapshot(db: asyncpg.Connection, schema: str) -> dict[str, list[asyncpg.Record]]:
    tables = ("counts", "distinct_counts", "seen_keys", "salts", "marks", "state", "schema_version")
    return {t: await db.fetch(f'SELECT * FROM "{schema}".{t} ORDER BY 1, 2') for t in tables}


async def test_mark_maintain_and_migrate(
    make_stats: StatsFactory, clock: FakeClock, pg_dsn: str, schema: str, db: asyncpg.Connection
) -> None:
    version = MIGRATIONS[-1][0]
    recorded = "settings: timezone 'UTC', base_period 3600 s, user_ids 'hashed'\n"
    status, out, _ = await run(*target(pg_dsn, schema), "migrate")
    assert (status, out) == (
        0,
        f"schema {schema}: applied {len(MIGRATIONS)} migration(s), at version {version}\n{recorded}",
    )
    assert (await run(*target(pg_dsn, schema), "migrate"))[1] == (
        f"schema {schema}: already up to date, at version {version}\n{recorded}"
    )
    assert (await run(*target(pg_dsn, schema), "maintain"))[1].startswith(
        "nothing to maintain: the service has not gone live"
    )

    await seed_days(make_stats, clock)
    status, out, _ = await run(*target(pg_dsn, schema), "mark", "deploy 1.4", "--category", "deploy")
    assert status == 0
    assert out.startswith("marked 'deploy 1.4' (deploy) at ")
    # No UsageStats from here on: a started one would run maintenance in the background itself.
    marks = await db.fetch(f'SELECT name, category, at FROM "{schema}".marks ORDER BY at')
    assert [(m["name"], m["category"]) for m in marks] == [("go-live", "timeline"), ("deploy 1.4", "deploy")]
    assert marks[-1]["at"] == NOW
    report = [*target(pg_dsn, schema), "report", "--format", "json"]
    day_before = json.loads((await run(*report))[1])

    last_ended = date(2026, 3, 8)  # the day before the one 10 minutes (the default grace) before NOW
    status, out, _ = await run(*target(pg_dsn, schema), "maintain")
    assert status == 0
    assert out.endswith(f" to {last_ended}\n")
    assert out.startswith("maintained ")
    assert await db.fetchval(f'SELECT maintained_through FROM "{schema}".state') == last_ended
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".seen_keys WHERE day <= $1', last_ended) == 0
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".distinct_counts') >= 2
    assert (await run(*target(pg_dsn, schema), "maintain"))[1] == (
        f"nothing to maintain: every day up to {last_ended} was done already\n"
    )
    assert json.loads((await run(*report))[1]) == day_before  # maintenance moved rows, changed no figure


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["report", "--period", "week"], "invalid choice: 'week'"),
        (["report", "--format", "xml"], "invalid choice: 'xml'"),
        (["report", "--since", "yesterday"], "'yesterday' is not a date"),
        (["report", "--minimum", "-3"], "'-3' is not a number of zero or more"),
        (["mark"], "the following arguments are required: name"),
        (["mark", "  "], "a mark needs a non-empty name"),
        (["--schema", "no-such;schema", "report"], "schema: 'no-such;schema' is not a plain SQL identifier"),
        (["vacuum"], "invalid choice: 'vacuum'"),
    ],
)
async def test_usage_errors_exit_2_with_one_line(pg_dsn: str, argv: list[str], message: str) -> None:
    status, out, err = await run("--dsn", pg_dsn, *argv)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("usage-stats: error: ")
    assert message in err


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("USAGE_STATS_FLUSH_INTERVAL", "inf"),
        ("USAGE_STATS_SHUTDOWN_TIMEOUT", "1e400"),
        ("USAGE_STATS_BASE_PERIOD", "1e20"),
        ("USAGE_STATS_KEEP_MONTHS", "9" * 30),
    ],
)
async def test_infinite_or_overflowing_numbers_in_the_environment_are_usage_errors(
    pg_dsn: str, schema: str, var: str, raw: str
) -> None:
    status, out, err = await run("--dsn", pg_dsn, "--schema", schema, "report", env={var: raw})
    assert (status, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith(f"usage-stats: error: {var.removeprefix('USAGE_STATS_').lower()}: {var}=")


async def test_database_errors_exit_1_and_read_the_environment(schema: str) -> None:
    status, _, err = await run("report", env={"USAGE_STATS_DSN": BAD_DSN, "USAGE_STATS_SCHEMA": schema})
    assert status == 1
    assert err.startswith("usage-stats: database error: cannot connect to postgresql://someone:***@127.0.0.1:1/nothing")
    assert err.count("\n") == 1
    assert "s3cret" not in err
    assert (await run("--dsn", "mysql://nope", "migrate"))[0] == 1


def _process(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("USAGE_STATS_")}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)


def test_console_script_and_module_in_a_real_process() -> None:
    script = os.path.join(os.path.dirname(sys.executable), "usage-stats")
    for argv in ([sys.executable, "-m", "usage_stats"], [script]):
        done = _process([*argv, "--dsn", BAD_DSN, "report"])
        assert done.returncode == 1
        assert done.stdout == ""
        assert done.stderr.count("\n") == 1
        assert "Traceback" not in done.stderr
        assert "s3cret" not in done.stderr
    assert _process([script, "report", "--period", "year"]).returncode == 2


AUCKLAND = ZoneInfo("Pacific/Auckland")


async def seed_auckland_days(make_stats: StatsFactory, clock: FakeClock) -> None:
    """Three days of counts and visitors of an Auckland service, ending a day ago, not maintained."""
    clock.set(NOW.astimezone(AUCKLAND).replace(hour=12, minute=0) - timedelta(days=4))  # noon in Auckland
    async with make_stats(timezone="Pacific/Auckland") as stats:
        for n in (2, 5, 3):
            clock.advance(days=1)
            stats.add("/items/{item_id}", "page", n)
            stats.seen_visitor(f"198.51.100.{n}")
            await stats.flush()


async def test_maintain_without_a_zone_in_the_environment_uses_the_recorded_zone(
    make_stats: StatsFactory,
    clock: FakeClock,
    pg_dsn: str,
    schema: str,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await seed_auckland_days(make_stats, clock)
    for name in ("TIMEZONE", "BASE_PERIOD", "USER_IDS"):
        monkeypatch.delenv(f"USAGE_STATS_{name}", raising=False)
    status, out, err = await run(*target(pg_dsn, schema), "maintain")
    assert (status, err) == (0, "")
    last_ended = date(2026, 3, 9)  # NOW is 13:05 on 10 March in Auckland
    assert out.endswith(f" to {last_ended}\n")
    assert await db.fetchval(f'SELECT maintained_through FROM "{schema}".state') == last_ended
    # Every day row (rolled up from base rows) and every distinct row starts at an Auckland midnight.
    day_rows = await db.fetch(f'SELECT start, value FROM "{schema}".counts WHERE level = 2')
    distinct = await db.fetch(f'SELECT start, value FROM "{schema}".distinct_counts WHERE level = 2')
    assert day_rows
    assert distinct
    for row in [*day_rows, *distinct]:
        assert row["start"].astimezone(AUCKLAND).time() == time(0), row["start"]
    assert await db.fetchval(f'SELECT sum(value) FROM "{schema}".counts') == 10  # nothing lost or doubled
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".seen_keys') == 0  # every day is maintained
    assert await db.fetchval(f'SELECT sum(value) FROM "{schema}".distinct_counts') == 3


async def test_an_environment_that_disagrees_with_the_schema_is_a_usage_error(
    make_stats: StatsFactory, clock: FakeClock, pg_dsn: str, schema: str, db: asyncpg.Connection
) -> None:
    await seed_auckland_days(make_stats, clock)
    before = await snapshot(db, schema)
    for command in ("maintain", "report", "mark"):
        argv = [command, "deploy"] if command == "mark" else [command]
        status, out, err = await run(*target(pg_dsn, schema), *argv, env={"USAGE_STATS_TIMEZONE": "UTC"})
        assert (status, out) == (2, "")
        assert err.count("\n") == 1
        assert err.startswith("usage-stats: error: timezone: the environment says 'UTC' but schema")
        assert "records 'Pacific/Auckland'" in err
    assert await snapshot(db, schema) == before  # nothing maintained or marked
    status, _, _ = await run(*target(pg_dsn, schema), "maintain", env={"USAGE_STATS_TIMEZONE": "Pacific/Auckland"})
    assert status == 0  # the same value, given explicitly, is fine


async def recorded_settings(db: asyncpg.Connection, schema: str) -> tuple[object, ...]:
    return tuple(await db.fetchrow(f'SELECT timezone, base_period, user_ids FROM "{schema}".settings') or ())


async def test_settings_command_shows_and_changes_only_what_can_be_converted(
    make_stats: StatsFactory, clock: FakeClock, pg_dsn: str, schema: str, db: asyncpg.Connection
) -> None:
    here = target(pg_dsn, schema)
    status, out, _ = await run(*here, "migrate", env={"USAGE_STATS_TIMEZONE": "Europe/Berlin"})
    assert out.endswith("settings: timezone 'Europe/Berlin', base_period 3600 s, user_ids 'hashed'\n")
    assert await run(*here, "settings") == (
        0,
        f"schema {schema}: timezone 'Europe/Berlin', base_period 3600 s, user_ids 'hashed'\n",
        "",
    )
    # Nothing stored yet: any setting may change (the environment does not matter here).
    status, out, _ = await run(
        *here,
        "settings",
        "--timezone",
        "Pacific/Auckland",
        "--base-period",
        "1800",
        env={"USAGE_STATS_TIMEZONE": "UTC"},
    )
    assert status == 0
    assert out.startswith(
        f"schema {schema}: recorded timezone 'Pacific/Auckland', base_period 1800 s, user_ids 'hashed'"
    )
    stored = await recorded_settings(db, schema)
    assert stored == ("Pacific/Auckland", timedelta(minutes=30), "hashed")
    with pytest.raises(ConfigError, match=r"^timezone: this process has 'Europe/Berlin'"):
        await make_stats(timezone="Europe/Berlin", base_period=timedelta(minutes=30)).start()

    async with make_stats(timezone="Pacific/Auckland", base_period=timedelta(minutes=30)) as stats:
        stats.count("/a", "page")
        stats.seen_user("alice")
        await stats.flush()
    refused = [
        (["--timezone", "UTC"], "timezone: cannot change 'Pacific/Auckland' to 'UTC'", "count rows"),
        (["--base-period", "3600"], "base_period: cannot change 1800 s to 3600 s", "count rows"),
        (["--user-ids", "database"], "user_ids: cannot change 'hashed' to 'database'", "distinct keys"),
    ]
    for argv, message, why in refused:
        status, out, err = await run(*here, "settings", *argv)
        assert (status, out) == (2, "")
        assert err.startswith(f"usage-stats: error: {message}: schema {schema!r} holds 1 {why}")
        assert err.count("\n") == 1
    assert await recorded_settings(db, schema) == stored
    status, _, err = await run(*here, "settings", "--timezone", "Nowhere/Land")
    assert (status, err) == (2, "usage-stats: error: timezone: 'Nowhere/Land' is not an IANA time zone\n")
    assert (await run(*here, "settings", "--timezone", "Pacific/Auckland"))[1].startswith(
        f"schema {schema}: unchanged, timezone 'Pacific/Auckland'"
    )
    # Once day-end maintenance deleted the pending keys, the scheme may change; counts do not depend on it.
    await db.execute(f'DELETE FROM "{schema}".seen_keys')
    assert (await run(*here, "settings", "--user-ids", "database"))[0] == 0
    assert await db.fetchval(f'SELECT user_ids FROM "{schema}".settings') == "database"
