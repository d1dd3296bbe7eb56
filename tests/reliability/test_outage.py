"""Issue 4.1: under steady load the database goes away for 20 s and comes back; nothing is lost."""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path

import anyio
import pytest

from .app import CACHE_CATEGORY, CACHE_EVENT
from .proxy import CuttableProxy
from .server import Load, Result, UvicornProcess, app_env, stored_counts

OUTAGE = 20.0
BASELINE = OUTAGE  # the latency baseline: as long as the outage, under the same load, just before it


def _summary(results: list[Result]) -> tuple[float, float, float]:
    latencies = sorted(r.latency for r in results)
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99)], latencies[-1]


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["refused", "hanging"])
async def test_database_outage_under_load_loses_nothing(pg_dsn: str, schema: str, tmp_path: Path, failure: str) -> None:
    with CuttableProxy(pg_dsn) as proxy:
        env = app_env(proxy.dsn, schema, flush_interval=0.5, shutdown_timeout=5)
        server = UvicornProcess(tmp_path / "uvicorn.log", env)
        try:
            server.wait_ready()
            load = Load(server.url, lambda n: (f"/items/{n % 50}", {}), concurrency=4, pause=0.01)
            async with anyio.create_task_group() as tg:
                tg.start_soon(load.run, 2 * OUTAGE + 30)
                await anyio.sleep(BASELINE)
                cut_at = time.monotonic()
                if failure == "refused":  # a stopped server: connections closed, new ones refused
                    proxy.cut()
                else:  # a network black hole: connections stay open, nothing gets through
                    proxy.freeze()
                await anyio.sleep(OUTAGE)
                proxy.restore()
                proxy.thaw()
                restored_at = time.monotonic()
                await anyio.sleep(2)
                load.stop()
            during = [r for r in load.results if cut_at <= load.started + r.at < restored_at]
            assert not load.failed, f"{len(load.failed)} requests failed"
            sent = len(load.ok)

            # The periodic flush retries with backoff and saves everything once the database is back.
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline:
                stored = await stored_counts(pg_dsn, schema)
                if stored.get(("status", "2xx"), 0) >= sent:
                    break
                await anyio.sleep(0.5)
            recovered_after = time.monotonic() - restored_at
            await anyio.sleep(1.5)  # a few more flush intervals: nothing may be added twice
            stored = await stored_counts(pg_dsn, schema)
        finally:
            shutdown = server.stop()
    log = server.log()
    before = [r for r in load.results if load.started + r.at < cut_at and load.started + r.at + r.latency < cut_at]
    print(
        f"\noutage {OUTAGE:.0f} s ({failure}): {sent} requests, {len(during)} during the outage, all saved "
        f"{recovered_after:.1f} s after the database came back; shutdown {shutdown:.2f} s; latency "
        f"median/p99/max before {_ms(before)}, during {_ms(during)}"
    )
    assert stored[("page", "/items/{item_id}")] == sent
    assert stored[("status", "2xx")] == sent
    assert stored[(CACHE_CATEGORY, CACHE_EVENT)] == sent
    assert len(during) > 100
    # No added latency: the failing flushes run in the background. Compared with the same run's
    # baseline, never with a fixed time: the 2-core machine is shared, and its speed varies.
    (median_before, p99_before, _max_before), (median_during, p99_during, max_during) = map(_summary, (before, during))
    assert median_during <= 2 * median_before + 0.005
    assert p99_during <= 3 * p99_before
    # A request that waited for the database would wait for the outage itself; one slow request (a
    # garbage collection, the flush that completes when the network is back) is not that.
    assert max_during < OUTAGE / 10
    assert "Traceback" not in log
    if failure == "refused":
        # Said once, not once per request or per attempt; the retries back off (not one every 0.5 s).
        assert log.count("flush failed") == 1, log
        recovered = re.search(r"flush succeeded again after (\d+) failed attempts", log)
        assert recovered is not None, log
        assert 2 <= int(recovered.group(1)) <= 8
    else:
        # The flush under way waited for the database (nothing failed, nothing was sent twice) and said so.
        assert "flush failed" not in log
        assert log.count("a flush took") == 1, log
        print(re.findall(r"a flush took [\d.]+ s", log)[0])


def _ms(results: list[Result]) -> str:
    return "/".join(f"{x * 1000:.0f}" for x in _summary(results)) + " ms"
