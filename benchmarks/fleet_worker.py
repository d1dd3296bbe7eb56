"""One process of the fleet benchmark (`fleet.py`): a writer or the reader, through the public API only.

    python -m benchmarks.fleet_worker '<json job>'

A writer is one app worker: a `UsageStats` of its own (its own pool) that records the traffic of one
flush interval on the routes every worker serves (`ROUTES` x `CATEGORIES` counts, plus visitors and
users drawn from pools shared by every worker) and calls `await stats.flush()` again at once, as fast
as it can, timing each flush. The reader reads `table("day")` and `table("base")` in a loop, with a
pause between reads so that it does not take one of the machine's two cores from the server.

Both print `ready` once connected (after one flush or read), wait for the start time on stdin, work
until the window ends, print `done`, wait for a line on stdin, and print one JSON line: what they
did, and (writers) exactly what they recorded, so that the coordinator can check the totals.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from importlib import import_module
from types import ModuleType
from typing import Any

ROUTES = 200
CATEGORIES = ("page", "api", "file", "admin")
VISITOR_POOL = 20_000  # addresses /24 apart, so every one is a distinct visitor
USER_POOL = 2_000
VISITORS_PER_FLUSH = 20
USERS_PER_FLUSH = 5
READ_PAUSE = 0.2  # between two table reads: a dashboard refreshed far more often than anyone would
AT = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)  # every count falls in one base period of one day


def event(route: int) -> str:
    return f"/r{route}/items/{{item_id}}"


def visitor(i: int) -> str:
    return f"10.{i // 256}.{i % 256}.9"


def package(name: str) -> ModuleType:
    if name == "usage_stats":
        return import_module(name)
    from .baseline import load

    before = load()
    if before is None:
        raise RuntimeError("the baseline package is not available (no git history)")
    return before


def make_stats(job: dict[str, Any]) -> Any:
    pkg = package(job["package"])
    config = pkg.UsageConfig(
        dsn=job["dsn"],
        schema=job["schema"],
        flush_interval=timedelta(hours=1),  # only the loop's own flush() calls
        shutdown_timeout=timedelta(seconds=120),
        statement_cache_size=job.get("statement_cache_size", 100),  # 0 behind pgbouncer
    )
    return pkg.UsageStats(config, clock=lambda: AT)


async def _line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def _start_signal() -> float:
    print("ready", flush=True)
    go = float(await _line())
    await asyncio.sleep(max(0.0, go - time.time()))
    return go


async def _done() -> None:
    """Say the window's work is done, and keep the connections until told to go (so that the
    coordinator can read their backends' CPU time)."""
    print("done", flush=True)
    await _line()


class Traffic:
    """What one worker records between two flushes, and the sum of all it recorded."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.rounds = 0
        self.counts: dict[str, int] = {}
        self.visitors: set[int] = set()
        self.users: set[int] = set()

    def record(self, stats: Any) -> None:
        self.rounds += 1
        for route in range(ROUTES):
            name = event(route)
            for c, category in enumerate(CATEGORIES):
                n = 1 + (self.seed + self.rounds + route + c) % 5
                stats.add(name, category, n)
                key = f"{category}\t{name}"
                self.counts[key] = self.counts.get(key, 0) + n
        for i in self.rng.sample(range(VISITOR_POOL), VISITORS_PER_FLUSH):
            stats.seen_visitor(visitor(i))
            self.visitors.add(i)
        for i in self.rng.sample(range(USER_POOL), USERS_PER_FLUSH):
            stats.seen_user(f"user-{i}")
            self.users.add(i)


async def writer(job: dict[str, Any]) -> dict[str, Any]:
    stats = make_stats(job)
    traffic = Traffic(job["seed"])
    latencies: list[float] = []
    failures = 0
    async with stats:
        traffic.record(stats)
        await stats.flush()  # connected, salt of the day cached: ready
        go = await _start_signal()
        cpu = time.process_time()
        end = go + job["seconds"]
        while time.time() < end:
            traffic.record(stats)
            t0 = time.perf_counter()
            try:
                await stats.flush()
            except Exception:
                failures += 1  # the counts stay pending; the final flush at exit saves them
                continue
            latencies.append(time.perf_counter() - t0)
        finished = time.time()
        cpu = time.process_time() - cpu
        await _done()
    return {
        "latencies": latencies,
        "failures": failures,
        "elapsed": finished - go,
        "cpu": cpu,
        "counts": traffic.counts,
        "visitors": sorted(traffic.visitors),
        "users": sorted(traffic.users),
    }


async def reader(job: dict[str, Any]) -> dict[str, Any]:
    stats = make_stats(job)
    latencies: list[float] = []
    async with stats:
        await stats.table("day")
        go = await _start_signal()
        end = go + job["seconds"]
        while time.time() < end:
            for period in ("day", "base"):
                t0 = time.perf_counter()
                await stats.table(period)
                latencies.append(time.perf_counter() - t0)
                await asyncio.sleep(READ_PAUSE)
        await _done()
    return {"latencies": latencies}


def main() -> None:
    job = json.loads(sys.argv[1])
    result = asyncio.run(writer(job) if job["role"] == "writer" else reader(job))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
