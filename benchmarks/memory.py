"""Benchmark 8: resident memory of the recorder after a day of distinct visitors, today's package and
the package before the current work (`benchmarks.baseline`), each in a fresh interpreter so that
nothing else measured here is in its memory.

Two ways in: `seen_visitor()` calls, and requests through `UsageMiddleware` (what a flood of distinct
clients costs, the request path's buffers included), whose pending is read (settled) before measuring.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from . import baseline
from .report import Section

_ROOT = Path(__file__).resolve().parent.parent

_CHILD = """
import asyncio, gc, importlib, json, statistics, sys, time
from datetime import UTC, datetime

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

n, name, way = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if name != "usage_stats":
    from benchmarks import baseline
    baseline.load()
pkg = importlib.import_module(name)
at = datetime(2026, 3, 10, 12, tzinfo=UTC)
stats = pkg.UsageStats(pkg.UsageConfig(dsn="postgresql://127.0.0.1:9/unused"), clock=lambda: at)
START = {"type": "http.response.start", "status": 200, "headers": []}
BODY = {"type": "http.response.body", "body": b"ok"}

async def app(scope, receive, send):
    await send(START)
    await send(BODY)

async def receive():
    return {"type": "http.request", "body": b""}

def full_collection():  # median seconds of a full collection of this process's heap
    times = []
    for _ in range(5):
        t = time.perf_counter()
        gc.collect()
        times.append(time.perf_counter() - t)
    return statistics.median(times)

async def send(message):
    pass

async def requests():
    middleware = pkg.UsageMiddleware(app, stats=stats)
    for i in range(n):  # n distinct /24 networks: n distinct visitors after the address is cut
        scope = {"type": "http", "method": "GET", "path": "/", "root_path": "", "headers": [],
                 "client": (f"{11 + i // 65536}.{i // 256 % 256}.{i % 256}.77", 4000)}
        await middleware(scope, receive, send)

gc.collect()
before = rss()
collect_before = full_collection()
if way == "requests":
    asyncio.run(requests())
else:
    seen = stats.seen_visitor
    for i in range(n):
        seen(f"{11 + i // 65536}.{i // 256 % 256}.{i % 256}.77")
    for i in range(50):
        stats.count(f"/r{i}", "page")
keys = stats.pending.total_keys
gc.collect()
after = rss()
collect_after = full_collection()
print(json.dumps({"before": before, "after": after, "keys": keys,
                  "gc_before": collect_before, "gc_after": collect_after}))
"""


def _measure(n: int, name: str, way: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(n), name, way], capture_output=True, text=True, check=True, cwd=_ROOT
    )
    data: dict[str, float] = json.loads(out.stdout)
    return data


def run(quick: bool = False) -> Section:
    n = 200_000 if quick else 1_000_000
    section = Section(
        "8. Memory",
        f"Resident memory of a fresh process (RSS from /proc) before and after recording {n:,} distinct "
        "visitors in one day, through `seen_visitor()` (and 50 events) and through `UsageMiddleware` "
        "(one request each, then `pending` read); the address cache is bounded at 65,536 entries. "
        "And what those visitors add to a full garbage collection of the process (`gc.collect()`, "
        "median of 5, against the same process before recording): the pause every full collection "
        "of the host app's heap pays while they are pending. "
        "Before: the package before the current work, in the same run.",
    )
    names = ["usage_stats"] + ([baseline.NAME] if baseline.load() is not None else [])
    for way, label in (("seen_visitor", "seen_visitor()"), ("requests", "requests")):
        for name in names:
            data = _measure(n, name, way)
            grown = data["after"] - data["before"]
            who = "usage_stats" if name == "usage_stats" else f"before ({baseline.BASELINE[:7]})"
            section.row(
                f"{who}, {label}: RSS after {data['keys']:,} distinct visitors",
                f"{data['after'] / 2**20:.1f} MiB (+{grown / 2**20:.1f} MiB)",
                f"{grown / max(data['keys'], 1):.0f} bytes/visitor",
            )
            section.row(
                f"{who}, {label}: a full garbage collection with them pending",
                f"{data['gc_after'] * 1e3:.1f} ms (before recording: {data['gc_before'] * 1e3:.1f} ms)",
                f"{(data['gc_after'] - data['gc_before']) * 1e3:+.1f} ms",
            )
    return section
