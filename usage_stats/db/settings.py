"""The settings that shape stored rows (`timezone`, `base_period`, `user_ids`), recorded in the schema.

Rows are bucketed by the zone and the base period, and distinct keys are encoded by the user ID
scheme, so every process on one schema must use the same values. The first process that finds none
recorded (a new schema, or one created before settings were recorded) records its own; every later
one is checked against them (`check_settings`). The CLI takes them from the schema where the
environment is silent (`adopt_settings`). Changing one on purpose is `change_settings`, which
refuses while stored rows depend on the old value.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta

import asyncpg

from ..config import UsageConfig
from ..errors import ConfigError
from . import day_sums
from .migrations import quote_ident

__all__ = [
    "RECORDED",
    "Settings",
    "adopt_settings",
    "change_settings",
    "check_settings",
    "record_settings",
    "stored_settings",
]

logger = logging.getLogger(__name__)

RECORDED = ("timezone", "base_period", "user_ids")
"""The `UsageConfig` fields recorded in the schema, in the order they are reported."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """The recorded values of the `RECORDED` fields."""

    timezone: str
    base_period: timedelta
    user_ids: str

    @classmethod
    def of(cls, config: UsageConfig) -> Settings:
        """The values `config` would record."""
        return cls(config.timezone, config.base_period, config.user_ids)

    def describe(self, field: str) -> str:
        """The value of `field` as a person (and an environment variable) writes it."""
        value = getattr(self, field)
        if isinstance(value, timedelta):
            return f"{int(value.total_seconds())} s"
        return repr(value)

    def differences(self, other: Settings) -> list[str]:
        """The fields in which `other` differs from these settings."""
        return [name for name in RECORDED if getattr(self, name) != getattr(other, name)]


async def stored_settings(conn: asyncpg.Connection, schema: str) -> Settings | None:
    """The settings recorded in `schema`, or None when none are (or the schema predates them)."""
    s = quote_ident(schema)
    async with conn.transaction():  # both reads on one server connection behind a transaction pooler
        if await conn.fetchval("SELECT to_regclass($1)", f"{s}.settings") is None:
            return None
        row = await conn.fetchrow(f"SELECT timezone, base_period, user_ids FROM {s}.settings")
    return None if row is None else Settings(row[0], row[1], row[2])


async def record_settings(conn: asyncpg.Connection, schema: str, config: UsageConfig) -> Settings:
    """Record `config`'s settings in `schema` unless some are recorded already; returns the recorded ones.

    Needs the schema migrated. Only reads when settings are recorded (no write right needed then).
    """
    stored = await stored_settings(conn, schema)
    if stored is not None:
        return stored
    s = quote_ident(schema)
    mine = Settings.of(config)
    async with conn.transaction():
        status = await conn.execute(
            f"INSERT INTO {s}.settings (timezone, base_period, user_ids) VALUES ($1, $2, $3)"
            " ON CONFLICT (id) DO NOTHING",
            mine.timezone,
            mine.base_period,
            mine.user_ids,
        )
    if status.endswith(" 1"):
        logger.info(
            "usage_stats: recorded timezone %s, base period %s and user_ids %s in schema %s",
            mine.timezone,
            mine.describe("base_period"),
            mine.user_ids,
            schema,
        )
        return mine
    stored = await stored_settings(conn, schema)  # another process recorded its own first
    assert stored is not None
    return stored


async def check_settings(conn: asyncpg.Connection, schema: str, config: UsageConfig) -> Settings:
    """Record `config`'s settings if none are, else raise `ConfigError` where `config` disagrees.

    The error names each field that differs, with this process's value and the recorded one.
    """
    stored = await record_settings(conn, schema, config)
    mine = Settings.of(config)
    wrong = stored.differences(mine)
    if wrong:
        raise ConfigError(
            "; ".join(
                f"{name}: this process has {mine.describe(name)} but schema {schema!r} records {stored.describe(name)}"
                for name in wrong
            )
            + ". Every process on one schema must agree (to change a recorded value on purpose, see "
            "`usage-stats settings --help`)"
        )
    return stored


def adopt_settings(config: UsageConfig, stored: Settings | None, explicit: frozenset[str]) -> UsageConfig:
    """`config` with the recorded settings where it was not `explicit`ly given a value (the CLI's rule).

    An explicit value that disagrees raises `ConfigError` as `check_settings` does.
    """
    if stored is None:
        return config
    mine = Settings.of(config)
    wrong = [name for name in stored.differences(mine) if name in explicit]
    if wrong:
        raise ConfigError(
            "; ".join(
                f"{name}: the environment says {mine.describe(name)} but schema {config.schema!r} records "
                f"{stored.describe(name)}"
                for name in wrong
            )
            + " (unset the variable to use the recorded value, or see `usage-stats settings --help`)"
        )
    return dataclasses.replace(config, **{name: getattr(stored, name) for name in RECORDED})


# What each setting shapes: rows in these tables were bucketed or encoded with the old value.
_SHAPED = {
    "timezone": ("counts", "distinct_counts", "seen_keys"),
    "base_period": ("counts", "distinct_counts", "seen_keys"),
    "user_ids": ("seen_keys",),
}
_WHY = {
    "counts": "count rows",
    "distinct_counts": "distinct-count rows",
    "seen_keys": "distinct keys of days not maintained yet",
}


async def change_settings(conn: asyncpg.Connection, schema: str, new: Settings) -> Settings | None:
    """Record `new` in `schema` (migrated) on purpose; returns the settings it replaced (None: none were).

    `timezone` and `base_period` can change only while the schema holds no counts, distinct counts or
    distinct keys (rows cannot be re-bucketed into another zone's days or another period); `user_ids`
    only while no distinct keys are waiting for day-end maintenance (a key of one scheme never matches
    the same user's key of another, so the user would count twice, and raw IDs would stay). Otherwise
    `ConfigError` says what is in the way. Writers are locked out while it checks and changes.
    """
    s = quote_ident(schema)
    async with conn.transaction():
        # Blocks flushes (and other changes) until commit, so nothing is written under the old value after the check.
        await conn.execute(
            f"LOCK TABLE {s}.settings, {s}.counts, {s}.distinct_counts, {s}.seen_keys IN SHARE ROW EXCLUSIVE MODE"
        )
        old = await stored_settings(conn, schema)
        if old is not None:
            for name in old.differences(new):
                for table in _SHAPED[name]:
                    rows = await conn.fetchval(f"SELECT count(*) FROM {s}.{table}")
                    if rows:
                        raise ConfigError(
                            f"{name}: cannot change {old.describe(name)} to {new.describe(name)}: schema {schema!r} "
                            f"holds {rows} {_WHY[table]} made with the old value, which cannot be converted"
                        )
            if {"timezone", "base_period"} & set(old.differences(new)):
                await day_sums.forget(conn, s)  # derived, and its months are the old zone's
        await conn.execute(
            f"INSERT INTO {s}.settings (timezone, base_period, user_ids) VALUES ($1, $2, $3)"
            " ON CONFLICT (id) DO UPDATE SET timezone = excluded.timezone, base_period = excluded.base_period,"
            " user_ids = excluded.user_ids, recorded_at = now()",
            new.timezone,
            new.base_period,
            new.user_ids,
        )
    return old
