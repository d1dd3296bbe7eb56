"""Real `uvicorn` processes serving `tests.reliability.app`, bounded load from the test, and the stored totals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import asyncpg
import httpx

from .proxy import free_port

__all__ = ["Load", "Result", "UvicornProcess", "app_env", "stored_counts"]

ROOT = Path(__file__).resolve().parents[2]


def app_env(dsn: str, schema: str, flush_interval: float, shutdown_timeout: float | None = None) -> dict[str, str]:
    """The environment of a test app that stores in `schema` through `dsn`."""
    env = {"USAGE_STATS_DSN": dsn, "USAGE_STATS_SCHEMA": schema, "USAGE_STATS_FLUSH_INTERVAL": str(flush_interval)}
    if shutdown_timeout is not None:
        env["USAGE_STATS_SHUTDOWN_TIMEOUT"] = str(shutdown_timeout)
    return env


class UvicornProcess:
    """`uvicorn tests.reliability.app:create_app --factory` on a free loopback port, its log in a file."""

    def __init__(self, log_path: Path, env: dict[str, str], *, workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.workers = workers
        command = [sys.executable, "-m", "uvicorn", "tests.reliability.app:create_app", "--factory"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--no-access-log"]
        if workers > 1:
            command += ["--workers", str(workers)]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("USAGE_STATS_")}
        full_env.update(env)
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every worker has finished its startup (lifespan included)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"uvicorn exited with {self.proc.returncode}:\n{self.log()}")
            if self.log().count("Application startup complete.") >= self.workers:
                return
            time.sleep(0.1)
        raise AssertionError(f"uvicorn not ready after {timeout} s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> float:
        """Send `sig`, wait for the exit; returns the seconds it took."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        finally:
            self.close()
        return time.monotonic() - started

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@dataclass
class Result:
    at: float  # seconds since the load started
    latency: float
    status: int | None  # None: the request failed (connection refused or reset)
    pid: str | None = None  # the worker that answered


@dataclass
class Load:
    """Bounded load: `concurrency` clients, each sending requests one after another until stopped."""

    url: str
    request: Callable[[int], tuple[str, dict[str, str]]]  # request number -> (path, headers)
    concurrency: int = 4
    max_requests: int = 20_000
    pause: float = 0.0
    keepalive: bool = True  # False: a new connection per request (spread over the workers by the kernel)
    results: list[Result] = field(default_factory=list)
    started: float = 0.0  # time.monotonic() when the load started
    _stopped: bool = False
    _sent: int = 0

    def stop(self) -> None:
        self._stopped = True

    @property
    def ok(self) -> list[Result]:
        return [r for r in self.results if r.status == 200]

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.status != 200]

    async def run(self, duration: float) -> None:
        """Send requests for at most `duration` seconds (or until `stop()` or `max_requests`)."""
        start = self.started = time.monotonic()
        keep = self.concurrency if self.keepalive else 0
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=keep)
        async with httpx.AsyncClient(base_url=self.url, limits=limits, timeout=10.0) as client:

            async def one_client() -> None:
                while not self._stopped and self._sent < self.max_requests and time.monotonic() - start < duration:
                    n = self._sent
                    self._sent += 1
                    path, headers = self.request(n)
                    t0 = time.monotonic()
                    pid = None
                    try:
                        response = await client.get(path, headers=headers)
                        status: int | None = response.status_code
                        pid = response.headers.get("x-pid")
                    except httpx.TransportError:
                        status = None
                    self.results.append(Result(t0 - start, time.monotonic() - t0, status, pid))
                    if status is None and self._stopped:
                        return
                    if self.pause:
                        await anyio.sleep(self.pause)

            async with anyio.create_task_group() as tg:
                for _ in range(self.concurrency):
                    tg.start_soon(one_client)


async def stored_counts(dsn: str, schema: str) -> dict[tuple[str, str], int]:
    """Every stored count, summed over levels and periods, by (category, event)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f'SELECT category, event, sum(value)::bigint AS n FROM "{schema}".counts GROUP BY 1, 2')
    finally:
        await conn.close()
    return {(r["category"], r["event"]): r["n"] for r in rows}
