"""The gate every database call passes: prepared once, retried while unavailable, refused for good."""

from __future__ import annotations

from datetime import date

import anyio
import pytest

from usage_stats import ConfigError, StoreUnavailableError
from usage_stats.readiness import Readiness

DAY = date(2026, 3, 10)


async def test_prepares_once_for_concurrent_callers_after_failures() -> None:
    calls = 0

    async def prepare() -> date:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise StoreUnavailableError("down")
        await anyio.sleep(0.05)  # concurrent callers wait for this one
        return DAY

    gate = Readiness(prepare)
    for _ in range(2):
        with pytest.raises(StoreUnavailableError):
            await gate.ensure()
    assert not gate.ready.is_set()
    results: list[date] = []

    async def call() -> None:
        results.append(await gate.ensure())

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(call)
    assert results == [DAY] * 5
    assert calls == 3
    assert gate.ready.is_set()
    assert gate.go_live == DAY


async def test_a_config_error_is_kept_for_good_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def prepare() -> date:
        nonlocal calls
        calls += 1
        raise ConfigError("timezone: this process has 'UTC' but schema 'usage' records 'Pacific/Auckland'")

    gate = Readiness(prepare)
    for _ in range(3):
        with pytest.raises(ConfigError, match=r"^timezone"):
            await gate.ensure()
    assert calls == 1
    assert gate.refused is not None
    assert not gate.ready.is_set()
    assert len([r for r in caplog.records if "will store nothing" in r.getMessage()]) == 1
