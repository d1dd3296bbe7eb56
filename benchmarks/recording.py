"""Benchmark 3: `count()` and `seen_visitor()` calls per second on one core (CPU time of this process)."""

from __future__ import annotations

import random
import statistics
import time

from .apps import make_stats
from .report import Section


def _rate(fn: object, args: list[tuple[str, str]] | list[str], repeat: int) -> float:
    rates = []
    for _ in range(repeat):
        if isinstance(args[0], tuple):
            count = fn
            start = time.process_time()
            for event, category in args:  # type: ignore[misc]
                count(event, category)  # type: ignore[operator]
        else:
            seen = fn
            start = time.process_time()
            for ip in args:
                seen(ip)  # type: ignore[operator]
        rates.append(len(args) / (time.process_time() - start))
    return statistics.median(rates)


def run(quick: bool = False) -> Section:
    n, repeat = (200_000, 3) if quick else (1_000_000, 5)
    section = Section(
        "3. Recording calls per second (one core)",
        f"{n:,} calls per run, median of {repeat} runs, process CPU time; the loop over prepared arguments "
        "is included. count(): 20 events in one category. seen_visitor(): 1,000 addresses, repeat "
        "visitors (the address cache hit).",
    )
    rng = random.Random(3)
    stats = make_stats()
    events = [(f"/r{i}/items/{{item_id}}", "page") for i in range(20)]
    count_args = [events[rng.randrange(20)] for _ in range(n)]
    rate = _rate(stats.count, count_args, repeat)
    section.row(
        "count(event, category)", f"{rate:,.0f} calls/s", f"{rate / 2e6:.2f} of target", "≥ 2,000,000/s", rate >= 2e6
    )
    addresses = [f"203.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(1_000)]
    seen_args = [addresses[rng.randrange(1_000)] for _ in range(n)]
    rate = _rate(stats.seen_visitor, seen_args, repeat)
    section.row("seen_visitor(ip)", f"{rate:,.0f} calls/s", f"{rate / 1e6:.2f} of target", "≥ 1,000,000/s", rate >= 1e6)
    return section
