"""Shared fixtures: a real PostgreSQL (USAGE_STATS_TEST_DSN, else the embedded one), a fresh
schema per test, a clock the test drives, and a factory for started `UsageStats`."""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from usage_stats import UsageConfig, UsageStats
from usage_stats.embedded import hold_embedded


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Run every `async def` test with anyio's plugin (marked before parametrisation happens)."""
    inner = getattr(getattr(obj, "hypothesis", None), "inner_test", obj)  # @given wraps the coroutine
    if inspect.iscoroutinefunction(inner) and name.startswith("test"):
        pytest.mark.anyio(obj)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@contextmanager
def embedded_folder() -> Iterator[Path]:
    """A data folder for an embedded server, removed afterwards.

    Not under pytest's temporary folder: the server runs as another user when the tests run as root,
    and pytest makes its folder private again (mode 700) whenever another pytest run starts.
    """
    folder = Path(tempfile.mkdtemp(prefix="usage_stats_pg_"))
    try:
        yield folder / "data"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def embedded_dsn() -> Iterator[str]:
    """The embedded PostgreSQL, started once per session in a temporary folder and stopped at its end."""
    with embedded_folder() as folder:
        server = hold_embedded(folder)
        try:
            yield server.dsn
        finally:
            server.release_now()


@pytest.fixture
def embedded_data_dir() -> Iterator[Path]:
    """A data folder of this test's own for an embedded server (see `embedded_folder`)."""
    with embedded_folder() as folder:
        yield folder


@pytest.fixture(scope="session")
def pg_dsn(request: pytest.FixtureRequest) -> str:
    """The PostgreSQL the tests use: USAGE_STATS_TEST_DSN when set, else the embedded server."""
    dsn = os.environ.get("USAGE_STATS_TEST_DSN")
    if dsn:
        return dsn
    return str(request.getfixturevalue("embedded_dsn"))


async def _fresh_schema(pg_dsn: str) -> AsyncIterator[str]:
    name = "t_" + uuid.uuid4().hex[:12]
    yield name
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def schema(pg_dsn: str) -> AsyncIterator[str]:
    """A fresh schema name for this test, dropped afterwards."""
    async for name in _fresh_schema(pg_dsn):
        yield name


@pytest.fixture
async def second_schema(pg_dsn: str) -> AsyncIterator[str]:
    """Another fresh schema, for comparing two runs side by side."""
    async for name in _fresh_schema(pg_dsn):
        yield name


async def stored_state(conn: asyncpg.Connection, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything flushes and maintenance leave in `schema`, comparable across schemas (salt and key bytes left out)."""
    s = f'"{schema}"'
    return {
        "counts": [tuple(r) for r in await conn.fetch(f"SELECT * FROM {s}.counts ORDER BY 1, 2, 3, 4")],
        "distinct": [tuple(r) for r in await conn.fetch(f"SELECT * FROM {s}.distinct_counts ORDER BY 1, 2, 3")],
        "keys": [
            tuple(r)
            for r in await conn.fetch(f"SELECT day, category, count(*) FROM {s}.seen_keys GROUP BY 1, 2 ORDER BY 1, 2")
        ],
        "salts": [tuple(r) for r in await conn.fetch(f"SELECT day FROM {s}.salts ORDER BY 1")],
        "state": [tuple(r) for r in await conn.fetch(f"SELECT maintained_through FROM {s}.state")],
    }


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def set(self, moment: datetime) -> datetime:
        self.now = moment
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))


StatsFactory = Callable[..., UsageStats]


@pytest.fixture
def make_config(pg_dsn: str, schema: str) -> Callable[..., UsageConfig]:
    def make(**overrides: Any) -> UsageConfig:
        values: dict[str, Any] = {"dsn": pg_dsn, "schema": schema, "flush_interval": timedelta(hours=1)}
        values.update(overrides)
        return UsageConfig(**values)

    return make


@pytest.fixture
def make_stats(make_config: Callable[..., UsageConfig], clock: FakeClock) -> StatsFactory:
    """Builds (unstarted) `UsageStats` on the test's schema, driven by the test clock by default."""

    def make(*, use_clock: bool = True, before_flush: Any = None, **overrides: Any) -> UsageStats:
        return UsageStats(make_config(**overrides), clock=clock if use_clock else None, before_flush=before_flush)

    return make


@pytest.fixture
async def db(pg_dsn: str, schema: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection, for asserting on what is stored."""
    conn = await asyncpg.connect(pg_dsn)
    yield conn
    await conn.close()
