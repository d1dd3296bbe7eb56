"""Settings recorded in the schema: the first process records `timezone`, `base_period` and
`user_ids`; a process that disagrees fails at start with a `ConfigError` naming the field and both
values, and leaves nothing behind."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import asyncpg
import pytest

from tests.conftest import FakeClock, StatsFactory
from usage_stats import ConfigError, UsageConfig, UsageStats
from usage_stats.db.migrations import migrate
from usage_stats.db.settings import Settings, adopt_settings, change_settings, check_settings, stored_settings


async def rows(db: asyncpg.Connection, schema: str) -> dict[str, Any]:
    s = f'"{schema}"'
    return {
        "settings": [tuple(r) for r in await db.fetch(f"SELECT timezone, base_period, user_ids FROM {s}.settings")],
        "counts": [tuple(r) for r in await db.fetch(f"SELECT * FROM {s}.counts ORDER BY 1, 2, 3, 4")],
        "keys": await db.fetchval(f"SELECT count(*) FROM {s}.seen_keys"),
        "marks": [tuple(r) for r in await db.fetch(f"SELECT name, at FROM {s}.marks ORDER BY id")],
    }


async def test_a_utc_worker_next_to_an_auckland_schema_fails_at_start(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str
) -> None:
    async with make_stats(timezone="Pacific/Auckland") as auckland:
        auckland.add("/a", "page", 3)
        await auckland.flush()
    before = await rows(db, schema)
    assert before["settings"] == [("Pacific/Auckland", timedelta(hours=1), "hashed")]

    utc = make_stats()  # the default zone: UTC
    with pytest.raises(ConfigError) as info:
        await utc.start()
    message = str(info.value)
    assert message.startswith("timezone: this process has 'UTC' but schema")
    assert "records 'Pacific/Auckland'" in message
    assert "base_period" not in message  # only what differs
    assert "user_ids" not in message
    utc.count("/b", "page")
    await utc.stop()  # harmless after a failed start; nothing is saved
    assert await rows(db, schema) == before


@pytest.mark.parametrize(
    ("recorded", "mine", "field", "values"),
    [
        ({"user_ids": "hashed"}, {"user_ids": "database"}, "user_ids", ("'database'", "'hashed'")),
        ({"user_ids": "database"}, {"user_ids": "hashed"}, "user_ids", ("'hashed'", "'database'")),
        ({}, {"base_period": timedelta(minutes=15)}, "base_period", ("900 s", "3600 s")),
    ],
)
async def test_a_worker_with_another_scheme_or_base_period_fails_at_start(
    make_stats: StatsFactory,
    db: asyncpg.Connection,
    schema: str,
    recorded: dict[str, Any],
    mine: dict[str, Any],
    field: str,
    values: tuple[str, str],
) -> None:
    async with make_stats(**recorded) as first:
        first.seen_user("alice")
        await first.flush()
    before = await rows(db, schema)
    other = make_stats(**mine)
    with pytest.raises(ConfigError, match=f"^{field}: this process has {values[0]} but schema .* records {values[1]}"):
        await other.start()
    other.seen_user("alice")
    await other.stop()
    assert await rows(db, schema) == before  # no raw ID, no second key for the same user
    async with make_stats(**recorded) as again:  # the recorded values still start
        again.seen_user("alice")
        await again.flush()
    assert (await rows(db, schema))["keys"] == 1


async def test_every_difference_is_named_at_once(make_stats: StatsFactory) -> None:
    async with make_stats():
        pass
    with pytest.raises(ConfigError) as info:
        await make_stats(timezone="Asia/Kolkata", base_period=timedelta(days=1), user_ids="memory").start()
    assert [part.split(":")[0].strip() for part in str(info.value).split(";")] == [
        "timezone",
        "base_period",
        "user_ids",
    ]


async def test_a_schema_without_recorded_settings_adopts_the_first_starting_process(
    make_config: Any, clock: FakeClock, db: asyncpg.Connection, schema: str, pg_dsn: str
) -> None:
    # A schema created before settings were recorded: migrated, then its settings row removed.
    await migrate(db, schema)
    await db.execute(f'DELETE FROM "{schema}".settings')
    assert await stored_settings(db, schema) is None
    # Two processes with different zones start at the same moment: exactly one records its own.
    configs = [make_config(timezone="Europe/Berlin"), make_config(timezone="America/Chicago")]
    outcomes: list[str] = []

    async def start(config: UsageConfig) -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await check_settings(conn, schema, config)
            outcomes.append("ok " + config.timezone)
        except ConfigError:
            outcomes.append("refused " + config.timezone)
        finally:
            await conn.close()

    async with anyio.create_task_group() as tg:
        for config in configs:
            tg.start_soon(start, config)
    stored = await stored_settings(db, schema)
    assert stored is not None
    assert sorted(outcomes) == sorted(
        [f"ok {stored.timezone}", f"refused {({'Europe/Berlin', 'America/Chicago'} - {stored.timezone}).pop()}"]
    )
    async with UsageStats(make_config(timezone=stored.timezone), clock=clock):
        pass


async def test_a_restricted_reader_only_reads_recorded_settings(db: asyncpg.Connection, schema: str) -> None:
    await migrate(db, schema)
    config = UsageConfig(schema=schema, timezone="Pacific/Auckland")
    await check_settings(db, schema, config)
    async with db.transaction(readonly=True):  # recorded already: checking writes nothing
        assert await check_settings(db, schema, config) == Settings.of(config)


def test_adopt_takes_recorded_values_where_none_were_given() -> None:
    recorded = Settings("Pacific/Auckland", timedelta(minutes=30), "database")
    config = UsageConfig(keep_days=3)
    adopted = adopt_settings(config, recorded, frozenset())
    assert (adopted.timezone, adopted.base_period, adopted.user_ids, adopted.keep_days) == (
        "Pacific/Auckland",
        timedelta(minutes=30),
        "database",
        3,
    )
    assert adopt_settings(config, None, frozenset({"timezone"})) is config  # nothing recorded: as configured
    same = UsageConfig(timezone="Pacific/Auckland")
    assert adopt_settings(same, recorded, frozenset({"timezone"})).user_ids == "database"
    with pytest.raises(ConfigError, match=r"^timezone: the environment says 'UTC' but schema 'usage' records 'Pacific"):
        adopt_settings(config, recorded, frozenset({"timezone"}))


async def test_change_refuses_what_stored_rows_depend_on(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str
) -> None:
    async with make_stats() as stats:
        stats.count("/a", "page")
        stats.seen_user("alice")
        await stats.flush()
    utc = Settings("UTC", timedelta(hours=1), "hashed")
    for new, table in [
        (Settings("Pacific/Auckland", timedelta(hours=1), "hashed"), "count rows"),
        (Settings("UTC", timedelta(minutes=30), "hashed"), "count rows"),
        (Settings("UTC", timedelta(hours=1), "database"), "distinct keys"),
    ]:
        with pytest.raises(ConfigError, match=f"cannot change .* holds 1 {table}"):
            await change_settings(db, schema, new)
        assert await stored_settings(db, schema) == utc
    # Without pending keys (day-end maintenance deleted them) the scheme may change; counts do not mind.
    await db.execute(f'DELETE FROM "{schema}".seen_keys')
    assert await change_settings(db, schema, Settings("UTC", timedelta(hours=1), "database")) == utc
    assert await stored_settings(db, schema) == Settings("UTC", timedelta(hours=1), "database")
