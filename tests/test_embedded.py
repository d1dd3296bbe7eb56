"""The embedded PostgreSQL: used when no DSN is given, and a clear error when it is not installed."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import anyio
import pytest

from tests.conftest import FakeClock
from usage_stats import ConfigError, UsageConfig, UsageStats


@pytest.mark.embedded
async def test_no_dsn_starts_the_embedded_server_in_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    data = tmp_path / "pgdata"
    monkeypatch.setenv("USAGE_STATS_DATA_DIR", str(data))
    config = UsageConfig(schema="embedded_" + uuid.uuid4().hex[:8])
    assert config.dsn is None
    async with UsageStats(config, clock=clock) as stats:
        stats.count("/", "page")
        stats.seen_user("alice")
        await stats.flush()
        table = await stats.table("day")
    assert (data / "PG_VERSION").exists()  # the server's files are where we asked
    day = table.periods[0]
    assert day.get("page", "/").value == 1  # type: ignore[union-attr]
    assert day.get("seen", "user", "distinct").value == 1  # type: ignore[union-attr]
    try:
        async with UsageStats(config, clock=clock) as again:  # the data survives a restart
            assert (await again.table("day")).periods[0].get("page", "/").value == 1  # type: ignore[union-attr]
    finally:
        # Stop this test's server now rather than at interpreter exit, when its folder may be gone.
        await anyio.to_thread.run_sync(stats._embedded.cleanup)


@pytest.mark.embedded
async def test_missing_pgserver_gives_a_clear_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USAGE_STATS_DATA_DIR", str(tmp_path / "never"))
    # None in sys.modules makes `import pgserver...` raise ImportError, as if it was not installed.
    monkeypatch.setitem(sys.modules, "pgserver", None)
    monkeypatch.setitem(sys.modules, "pgserver.postgres_server", None)
    stats = UsageStats(UsageConfig())
    with pytest.raises(ConfigError) as info:
        await stats.start()
    message = str(info.value)
    assert message.startswith("dsn:")
    assert "usage-stats[embedded]" in message
    assert "USAGE_STATS_DSN" in message
    assert not (tmp_path / "never").exists()
