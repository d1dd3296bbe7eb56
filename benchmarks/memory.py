"""Benchmark 8: resident memory of the recorder after a day of 1,000,000 distinct visitors.

Runs in a fresh interpreter so that nothing else measured here is in its memory.
"""

from __future__ import annotations

import json
import subprocess
import sys

from .report import Section

_CHILD = """
import gc, json, sys
from datetime import UTC, datetime

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

from usage_stats import UsageConfig, UsageStats
n = int(sys.argv[1])
at = datetime(2026, 3, 10, 12, tzinfo=UTC)
stats = UsageStats(UsageConfig(dsn="postgresql://127.0.0.1:9/unused"), clock=lambda: at)
gc.collect()
before = rss()
seen = stats.seen_visitor
for i in range(n):  # n distinct /24 networks: n distinct visitors after the address is cut
    seen(f"{11 + i // 65536}.{i // 256 % 256}.{i % 256}.77")
for i in range(50):
    stats.count(f"/r{i}", "page")
gc.collect()
after = rss()
print(json.dumps({"before": before, "after": after, "keys": stats.pending.total_keys}))
"""


def run(quick: bool = False) -> Section:
    n = 200_000 if quick else 1_000_000
    section = Section(
        "8. Memory",
        f"Resident memory of a fresh process (RSS from /proc) before and after recording {n:,} distinct "
        "visitors in one day (and 50 events); the address cache is bounded at 65,536 entries.",
    )
    out = subprocess.run([sys.executable, "-c", _CHILD, str(n)], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    grown = data["after"] - data["before"]
    section.row("RSS before recording", f"{data['before'] / 2**20:.1f} MiB", "")
    section.row(
        f"RSS after {data['keys']:,} distinct visitors",
        f"{data['after'] / 2**20:.1f} MiB (+{grown / 2**20:.1f} MiB)",
        f"{grown / max(data['keys'], 1):.0f} bytes/visitor",
    )
    return section
