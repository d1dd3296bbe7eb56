"""Issue 4.2: SIGTERM to a `uvicorn` process under load saves every counted request, `before_flush`
counts included; with the database down it still ends in bounded time and says what it lost."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest

from .app import CACHE_CATEGORY, CACHE_EVENT
from .proxy import CuttableProxy
from .server import Load, UvicornProcess, app_env, stored_counts

ANSWERED_BEFORE_SIGTERM = 100


@pytest.mark.slow
async def test_sigterm_under_load_saves_every_counted_request(pg_dsn: str, schema: str, tmp_path: Path) -> None:
    env = app_env(pg_dsn, schema, flush_interval=3600)
    server = UvicornProcess(tmp_path / "uvicorn.log", env)
    try:
        server.wait_ready()
        load = Load(server.url, lambda n: (f"/items/{n % 20}", {"X-User": f"user{n % 7}"}), concurrency=8)
        async with anyio.create_task_group() as tg:
            tg.start_soon(load.run, 60.0)
            for _ in range(1000):  # under load: SIGTERM once requests flow, however slow the machine (<= 50 s)
                if len(load.ok) >= ANSWERED_BEFORE_SIGTERM:
                    break
                await anyio.sleep(0.05)
            shutdown = await anyio.to_thread.run_sync(server.stop)
            load.stop()
    finally:
        server.close()
    stored = await stored_counts(pg_dsn, schema)
    answered = len(load.ok)
    print(f"\nSIGTERM under load: {answered} answered, {len(load.failed)} refused, shutdown {shutdown:.2f} s")
    assert server.proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean exit
    assert answered >= ANSWERED_BEFORE_SIGTERM
    assert all(r.status is None for r in load.failed)  # refused after the shutdown began, never an error
    # Every answered request is stored; nothing is stored that was not sent (flush interval 1 h:
    # everything here was saved by the final flush).
    assert answered <= stored[("page", "/items/{item_id}")] <= len(load.results)
    assert stored[("status", "2xx")] == stored[("page", "/items/{item_id}")]
    assert stored[(CACHE_CATEGORY, CACHE_EVENT)] == stored[("page", "/items/{item_id}")]  # before_flush ran last
    assert shutdown < 10


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["refused", "hanging"])
async def test_sigterm_with_the_database_down_ends_in_bounded_time(
    pg_dsn: str, schema: str, tmp_path: Path, failure: str
) -> None:
    timeout = 2.0
    with CuttableProxy(pg_dsn) as proxy:
        env = app_env(proxy.dsn, schema, flush_interval=3600, shutdown_timeout=timeout)
        server = UvicornProcess(tmp_path / "uvicorn.log", env)
        try:
            server.wait_ready()
            async with httpx.AsyncClient(base_url=server.url) as client:
                for n in range(50):
                    assert (await client.get(f"/items/{n}", headers={"X-User": f"u{n % 5}"})).status_code == 200
            if failure == "refused":
                proxy.cut()
            else:
                proxy.freeze()
            shutdown = await anyio.to_thread.run_sync(server.stop)
        finally:
            server.close()
    log = server.log()
    print(f"\nSIGTERM with the database {failure}: shutdown {shutdown:.2f} s (shutdown_timeout {timeout} s)")
    assert server.proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean exit
    assert shutdown < timeout + 1.5, log  # the flush is cut at shutdown_timeout, stuck connections terminated
    # 50 page counts, 50 status counts, 50 cache counts from before_flush; 5 distinct users.
    lost = re.search(r"shutting down with (\d+) counts and (\d+) distinct keys not saved", log)
    assert lost is not None, log
    assert (int(lost.group(1)), int(lost.group(2))) == (150, 5)
    assert await stored_counts(pg_dsn, schema) == {}
