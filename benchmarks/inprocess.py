"""Benchmark 1: per-request overhead in process, driven through ASGI directly (no sockets).

Every variant serves the same pre-generated traffic. Rounds interleave the variants in a shuffled
order; each round gives each variant's time per request, and its overhead is paired with the bare
app's time in the same round. Figures are medians over the rounds.

Work that usage_stats defers is paid where it is caused: each timed batch of a usage_stats variant
(today's and the package before the current work, `benchmarks.baseline`) ends by reading
`stats.pending`, which folds whatever the request path held back, inside the timed window.
"""

from __future__ import annotations

import asyncio
import gc
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from .apps import LABELS, OURS, PEERS, build, traffic, variants
from .report import Section

_BODY = {"type": "http.request", "body": b"", "more_body": False}
FLOOR_TARGET = 2.0  # usage_stats' overhead, as a multiple of the no-op middleware's
RESAMPLES = 2_000  # bootstrap resamples of the rounds for the interval of a multiple
PEER_TARGET = 1 / 20  # usage_stats' overhead, as a share of each peer's


async def _receive() -> dict[str, Any]:
    return _BODY


async def _send(message: Any) -> None:
    pass


async def _batch(app: Any, scopes: list[dict[str, Any]], stats: Any) -> float:
    """Seconds per request over `scopes`, the read of `stats.pending` (if any) included."""
    receive, send = _receive, _send
    start = time.process_time()
    for scope in scopes:
        await app(scope.copy(), receive, send)
    if stats is not None:
        stats.pending.total_counts  # noqa: B018 (settles what the request path held back)
    return (time.process_time() - start) / len(scopes)


async def _measure(
    kind: str,
    rounds: int,
    batch: int,
    names: tuple[str, ...],
    builder: Callable[[str, str], tuple[Any, Any]] = build,
) -> dict[str, list[float]]:
    """Seconds per request of each variant in `names` (made by `builder(kind, variant)`: the app and
    its `UsageStats` or None), one figure per round."""
    scopes = traffic(batch)
    times: dict[str, list[float]] = {v: [] for v in names}
    rng = random.Random(7)
    for _ in range(rounds):
        # Fresh app instances every round: two instances of the very same app can differ by several
        # µs per request (memory layout), so one instance per variant for the whole run would bias it.
        order = list(names)
        rng.shuffle(order)
        apps = {v: builder(kind, v) for v in order}
        for v in order:
            await _batch(apps[v][0], scopes, apps[v][1])  # build the middleware stack, fill caches
        gc.collect()
        for v in order:
            times[v].append(await _batch(apps[v][0], scopes, apps[v][1]))
    return times


def _overheads(times: dict[str, list[float]]) -> dict[str, float]:
    """Each variant's time added to a request: the median over rounds of its time less the bare app's
    ("none") in the same round."""
    bare = times["none"]
    return {v: statistics.median([t - b for t, b in zip(ts, bare, strict=True)]) for v, ts in times.items()}


def _ratio(over: dict[str, float], variant: str, floor: float) -> float:
    return over[variant] / floor if floor > 0 else float("inf")


def interval(times: dict[str, list[float]], variant: str, seed: int = 11) -> tuple[float, float]:
    """A 95% interval of `variant`'s overhead as a multiple of the no-op's: the ratio of paired medians
    (`_overheads`) over `RESAMPLES` bootstrap resamples of the rounds (a round keeps its three figures
    together), their 2.5th and 97.5th percentiles. How far the run's noise alone could move it."""
    names = ("none", "noop", variant)
    rounds = range(len(times["none"]))
    rng = random.Random(seed)
    ratios = []
    for _ in range(RESAMPLES):
        picked = rng.choices(rounds, k=len(rounds))
        over = _overheads({name: [times[name][i] for i in picked] for name in names})
        ratios.append(_ratio(over, variant, over["noop"]))
    ratios.sort()
    return ratios[int(0.025 * RESAMPLES)], ratios[int(0.975 * RESAMPLES) - 1]


def run(quick: bool = False) -> Section:
    rounds, batch = (8, 500) if quick else (40, 2_000)
    names = variants()
    section = Section(
        "1. Per-request overhead, in process (ASGI, no sockets)",
        f"{rounds} interleaved rounds of {batch:,} requests per variant (20 routes with a path parameter, "
        "1,000 client addresses, 100 signed-in users on one request in five); medians of per-round "
        "figures, overhead paired with the bare app of the same round. Each usage_stats batch ends by "
        "reading `stats.pending` (which folds what the request path held back) inside the timed window. "
        f"In brackets after a multiple of the no-op's: its 95% interval over {RESAMPLES:,} bootstrap "
        "resamples of the rounds, how far this run's noise alone could move it.",
    )
    for kind in ("starlette", "fastapi"):
        times = asyncio.run(_measure(kind, rounds, batch, names))
        base = statistics.median(times["none"])
        over = _overheads(times)
        floor = over["noop"]
        title = "Starlette" if kind == "starlette" else "FastAPI"
        section.row(f"{title}: {LABELS['none']}", f"{base * 1e6:.1f} µs/request", "1.00", "")
        for v in names[1:]:
            target, met = "", None
            if v in OURS:
                multiple = _ratio(over, v, floor)
                low, high = interval(times, v)
                target = f"≤ {FLOOR_TARGET:.0f}x the no-op's"
                met = multiple <= FLOOR_TARGET
                ratio = f"+{over[v] / base:.1%} of bare, {multiple:.2f}x the no-op's (95%: {low:.2f} to {high:.2f}x)"
            else:
                ratio = f"+{over[v] / base:.1%} of bare"
            section.row(f"{title}: {LABELS[v]}", f"+{over[v] * 1e6:.2f} µs/request", ratio, target, met)
        ours = [v for v in OURS if v in names]
        for peer in PEERS:
            for v in ours:
                share = over[v] / over[peer] if over[peer] > 0 else float("inf")
                section.row(
                    f"{title}: {LABELS[v]} overhead vs {LABELS[peer]}",
                    f"1/{over[peer] / max(over[v], 1e-12):.0f} of it",
                    f"{share:.3f} of peer's",
                    f"≤ 1/20 ({PEER_TARGET:.3f})",
                    share <= PEER_TARGET,
                )
        _goals(section, title, over, floor, "usage_stats_before" in names)
    return section


def _goals(section: Section, title: str, over: dict[str, float], floor: float, has_before: bool) -> None:
    after = _ratio(over, "usage_stats", floor)
    before = _ratio(over, "usage_stats_before", floor) if has_before else None
    section.goal(
        f"{title}: overhead in process, a multiple of the no-op middleware's",
        f"≤ {FLOOR_TARGET:.0f}x",
        "" if before is None else f"{before:.2f}x",
        f"{after:.2f}x",
        after <= FLOOR_TARGET,
    )
    for peer in PEERS:
        share = over["usage_stats"] / over[peer] if over[peer] > 0 else float("inf")
        old = over["usage_stats_before"] / over[peer] if has_before and over[peer] > 0 else None
        section.goal(
            f"{title}: overhead as a share of {LABELS[peer]}'s",
            "≤ 1/20 (0.050)",
            "" if old is None else f"{old:.3f} (1/{1 / old:.0f})",
            f"{share:.3f} (1/{1 / share:.0f})" if share > 0 else f"{share:.3f}",
            share <= PEER_TARGET,
        )
