"""Benchmark 1: per-request overhead in process, driven through ASGI directly (no sockets).

Every variant serves the same pre-generated traffic. Rounds interleave the variants in a shuffled
order; each round gives each variant's time per request, and its overhead is paired with the bare
app's time in the same round. Figures are medians over the rounds.
"""

from __future__ import annotations

import asyncio
import gc
import random
import statistics
import time
from typing import Any

from .apps import LABELS, PEERS, VARIANTS, build, traffic
from .report import Section

_BODY = {"type": "http.request", "body": b"", "more_body": False}


async def _receive() -> dict[str, Any]:
    return _BODY


async def _send(message: Any) -> None:
    pass


async def _batch(app: Any, scopes: list[dict[str, Any]]) -> float:
    """Seconds per request over `scopes`."""
    receive, send = _receive, _send
    start = time.process_time()
    for scope in scopes:
        await app(scope.copy(), receive, send)
    return (time.process_time() - start) / len(scopes)


async def _measure(kind: str, rounds: int, batch: int) -> dict[str, list[float]]:
    scopes = traffic(batch)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    rng = random.Random(7)
    for _ in range(rounds):
        # Fresh app instances every round: two instances of the very same app can differ by several
        # µs per request (memory layout), so one instance per variant for the whole run would bias it.
        order = list(VARIANTS)
        rng.shuffle(order)
        apps = {v: build(kind, v)[0] for v in order}
        for v in order:
            await _batch(apps[v], scopes)  # build the middleware stack, fill caches (repeat visitors)
        gc.collect()
        for v in order:
            times[v].append(await _batch(apps[v], scopes))
    return times


def run(quick: bool = False) -> Section:
    rounds, batch = (8, 500) if quick else (40, 2_000)
    section = Section(
        "1. Per-request overhead, in process (ASGI, no sockets)",
        f"{rounds} interleaved rounds of {batch:,} requests per variant (20 routes with a path parameter, "
        "1,000 client addresses, 100 signed-in users on one request in five); medians of per-round "
        "figures, overhead paired with the bare app of the same round.",
    )
    for kind, target_share in (("starlette", 0.08), ("fastapi", 0.05)):
        times = asyncio.run(_measure(kind, rounds, batch))
        bare = times["none"]
        base = statistics.median(bare)
        over = {v: statistics.median([t - b for t, b in zip(times[v], bare, strict=True)]) for v in VARIANTS}
        title = "Starlette" if kind == "starlette" else "FastAPI"
        section.row(f"{title}: {LABELS['none']}", f"{base * 1e6:.1f} µs/request", "1.00", "")
        for v in VARIANTS[1:]:
            figure = f"+{over[v] * 1e6:.2f} µs/request"
            ratio = f"+{over[v] / base:.1%} of bare"
            target = ""
            met: bool | None = None
            if v == "usage_stats":
                target = f"< {target_share:.0%} of bare"
                met = over[v] < target_share * base
            section.row(f"{title}: {LABELS[v]}", figure, ratio, target, met)
        ours = max(over["usage_stats"], 1e-12)
        for peer in PEERS:
            share = over["usage_stats"] / over[peer] if over[peer] > 0 else float("inf")
            section.row(
                f"{title}: usage_stats overhead vs {LABELS[peer]}",
                f"{over[peer] / ours:.0f}x less",
                f"{share:.3f} of peer's",
                "≤ 1/20 (0.050)",
                share <= 0.05,
            )
    return section
