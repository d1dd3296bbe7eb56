"""Benchmark 3: recording calls per second on one core (CPU time of this process), today's package
and the package before the current work (`benchmarks.baseline`), side by side in one run.

`count()` and `seen_visitor()` are the public calls; "a request" is what `UsageMiddleware` asks of the
recorder once it knows the event, status and client (today `Recorder.hit` on the event's slot, before
`Recorder.request` with the network cut by the middleware's cache), followed by one read of
`pending`, which folds what the request path held back.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from . import baseline
from .apps import make_stats, make_stats_before
from .report import Section


def _rate(call: Callable[[], object], n: int, repeat: int) -> float:
    rates = []
    for _ in range(repeat):
        start = time.process_time()
        call()
        rates.append(n / (time.process_time() - start))
    return statistics.median(rates)


def _counts(stats: Any, args: list[tuple[str, str]]) -> Callable[[], object]:
    def run() -> None:
        count = stats.count
        for event, category in args:
            count(event, category)

    return run


def _visitors(stats: Any, args: list[str]) -> Callable[[], object]:
    def run() -> None:
        seen = stats.seen_visitor
        for ip in args:
            seen(ip)

    return run


def _requests(stats: Any, events: list[tuple[str, str]], args: list[tuple[int, str]]) -> Callable[[], object]:
    recorder = stats.recorder
    if hasattr(recorder, "hit"):  # today: one slot per event (status 2xx, visitors), addresses cut when folded
        slots = [recorder.slot(key, ("status", "2xx"), ("v", "visitor"), addresses=True) for key in events]

        def run() -> None:
            hit = recorder.hit
            for event, ip in args:
                hit(slots[event], ip)
            stats.pending.total_keys  # noqa: B018 (settles)

        return run
    networks: dict[str, str | None] = {}  # before: the middleware's cache of cut networks

    def run_before() -> None:
        request, cut = recorder.request, recorder.cut_address
        status = ("status", "2xx")
        for event, ip in args:
            network = networks.get(ip)
            if network is None:
                network = networks[ip] = cut(ip)
            request(events[event], status, ("v", "visitor"), network)
        stats.pending.total_keys  # noqa: B018

    return run_before


def run(quick: bool = False) -> Section:
    n, repeat = (200_000, 3) if quick else (1_000_000, 5)
    section = Section(
        "3. Recording calls per second (one core)",
        f"{n:,} calls per run, median of {repeat} runs, process CPU time; the loop over prepared arguments "
        "is included. count(): 20 events in one category. seen_visitor(): 1,000 addresses, repeat "
        "visitors (the address cache hit). A request: what the middleware asks of the recorder for one "
        "request (20 events, 1,000 addresses), and one read of `pending` at the end. Before: the package "
        "before the current work, in the same run.",
    )
    rng = random.Random(3)
    events = [(f"/r{i}/items/{{item_id}}", "page") for i in range(20)]
    count_args = [events[rng.randrange(20)] for _ in range(n)]
    addresses = [f"203.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(1_000)]
    seen_args = [addresses[rng.randrange(1_000)] for _ in range(n)]
    request_args = [(rng.randrange(20), addresses[rng.randrange(1_000)]) for _ in range(n)]
    packages: list[tuple[str, Callable[[], Any]]] = [("usage_stats", make_stats)]
    if baseline.load() is not None:
        packages.append((f"before ({baseline.BASELINE[:7]})", make_stats_before))
    rates: dict[tuple[str, str], float] = {}
    for who, make in packages:
        rates[("count", who)] = _rate(_counts(make(), count_args), n, repeat)
        rates[("seen", who)] = _rate(_visitors(make(), seen_args), n, repeat)
        rates[("request", who)] = _rate(_requests(make(), events, request_args), n, repeat)
    for what, label, target in (
        ("count", "count(event, category)", 2e6),
        ("seen", "seen_visitor(ip)", 1e6),
        ("request", "a request (event, status, visitor)", None),
    ):
        for who, _ in packages:
            rate = rates[(what, who)]
            section.row(
                f"{who}: {label}",
                f"{rate:,.0f} calls/s",
                "" if target is None else f"{rate / target:.2f} of target",
                "" if target is None else f"≥ {target:,.0f}/s",
                None if target is None else rate >= target,
            )
        if len(packages) > 1:
            before, after = rates[(what, packages[1][0])], rates[(what, "usage_stats")]
            section.row(f"{label}: today vs before", f"{after / before:.2f}x the calls/s", "", "")
    return section
