"""Benchmark 1b: per-request overhead in CPU instructions, counted by valgrind (cachegrind), not timed.

An instruction count does not move with the load of a shared machine: the same program, inputs and
environment give the same count, so this is the figure to compare across runs and machines where
benchmark 1's times are noisy. It does not see what the CPU's caches add (benchmark 1 does), so the
same runs also simulate them (`--cache-sim`, `--branch-sim`: cachegrind's model of the first-level
caches and of a simple branch predictor, not this CPU's): misses of the instruction and data caches
and mispredicted branches per request, where time goes that an instruction count does not show.

Each variant's worker process builds the app of benchmark 1, serves its traffic `WARMUP` times
(caches filled, code specialised), then `REPEATS` more times. In each memory layout (`LAYOUTS`),
two workers per variant serve the traffic once and `1 + EXTRA` times after the warm-up; the
difference in instructions over the difference in requests is the cost of one request, start-up and
warm-up cancelling out; the figure is the median over the layouts. Hash
seeds and address-space randomisation are fixed (`setarch -R`, where there is one) so that the
objects' ids, which usage_stats hashes, are the same in every run.

    .venv/bin/python -m benchmarks --only instructions
"""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from .apps import LABELS, build, traffic, variants
from .report import Section

REQUESTS = 1_000  # requests per pass over the traffic
WARMUP = 2
EXTRA = 2  # passes that the second worker serves beyond the first
TARGET = 2.0  # usage_stats' instructions per request over bare, as a multiple of the no-op's
# valgrind's summary -> what each line counts, over the whole run
_SUMMARY = {
    "instructions": re.compile(r"I\s+refs:\s+([\d,]+)"),
    "I1 misses": re.compile(r"I1\s+misses:\s+([\d,]+)"),
    "D1 misses": re.compile(r"D1\s+misses:\s+([\d,]+)"),
    "mispredicts": re.compile(r"Mispredicts:\s+([\d,]+)"),
}
SIMULATED = ("I1 misses", "D1 misses", "mispredicts")
# Bytes of padding in the worker's environment, one memory layout each (every allocation after start-up
# moves with it): the bare FastAPI app's own count moves with the layout by up to 2,700 instructions a
# request, Starlette's by under 100. Instructions are the median over these layouts; the simulated
# misses come from the first alone (simulating makes a run 2.6 times slower).
LAYOUTS = (0, 1_000, 3_000)
_PAD = "USAGE_STATS_BENCH_PAD"


def _worker(kind: str, variant: str, passes: int) -> None:
    """Serve the traffic WARMUP + `passes` times (run under valgrind by `_count`)."""
    from .inprocess import _batch

    async def serve() -> None:
        app, stats = build(kind, variant)
        scopes = traffic(REQUESTS)
        for _ in range(WARMUP):
            await _batch(app, scopes, stats)
        gc.collect()
        gc.disable()  # a collection falls wherever the allocations happen to cross its threshold
        for _ in range(passes):
            await _batch(app, scopes, stats)

    asyncio.run(serve())


def summary(stderr: str, names: Iterable[str] = tuple(_SUMMARY)) -> dict[str, int]:
    """The totals `names` (see `_SUMMARY`) of valgrind's summary in a cachegrind run's `stderr`."""
    totals = {}
    for name in names:
        found = _SUMMARY[name].search(stderr)
        if found is None:
            raise RuntimeError(f"no {name} in valgrind's summary: {stderr[-500:]}")
        totals[name] = int(found.group(1).replace(",", ""))
    return totals


def _count(kind: str, variant: str, passes: int, pad: int, simulate: bool) -> dict[str, int]:
    """Instructions (and if `simulate`, simulated cache misses and mispredicts) of a worker serving
    `passes` passes, start-up included, its environment padded with `pad` bytes."""
    sim = "yes" if simulate else "no"
    command = [
        "valgrind",
        "--tool=cachegrind",
        f"--cache-sim={sim}",
        f"--branch-sim={sim}",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        kind,
        variant,
        str(passes),
    ]
    setarch = shutil.which("setarch")
    if setarch:
        command = [setarch, platform.machine(), "-R", *command]
    env = {**os.environ, "PYTHONHASHSEED": "0", _PAD: "x" * pad}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, check=True, timeout=900)
    return summary(out.stderr, _SUMMARY if simulate else ("instructions",))


def _per_request(kind: str, variant: str, layouts: tuple[int, ...]) -> dict[str, float]:
    """What one request adds: instructions, the median over `layouts`; the simulated figures, from the first."""
    figures: dict[str, float] = {}
    instructions = []
    for n, pad in enumerate(layouts):
        one, more = _count(kind, variant, 1, pad, n == 0), _count(kind, variant, 1 + EXTRA, pad, n == 0)
        added = {name: (more[name] - one[name]) / (EXTRA * REQUESTS) for name in one}
        instructions.append(added.pop("instructions"))
        figures.update(added)
    figures["instructions"] = statistics.median(instructions)
    return figures


def run(quick: bool = False) -> Section:
    layouts = LAYOUTS[:1] if quick else LAYOUTS
    section = Section(
        "1b. Per-request overhead in instructions (valgrind)",
        f"Instructions per request that each middleware adds to the bare app of benchmark 1 (same routes "
        f"and traffic, {REQUESTS:,} requests), counted by cachegrind: the difference between a worker "
        f"serving the traffic {1 + EXTRA} times and one serving it once, after {WARMUP} warm-up passes, "
        f"the median over {len(layouts)} memory layout(s) (the workers' environment padded with "
        f"{', '.join(f'{pad:,}' for pad in layouts)} bytes: the bare FastAPI app's own count moves with "
        "the layout by up to 2,700 instructions a request); "
        "each usage_stats pass ends by reading `stats.pending`. Deterministic: the load of the machine "
        "does not change it, but neither does it see the cost of cache misses (benchmark 1 does). The same "
        "runs simulate the first-level caches and a simple branch predictor (cachegrind's models, not this "
        "CPU's), in the first layout: the misses and mispredicts each middleware adds to a request, where "
        "time goes that instructions do not show.",
    )
    if shutil.which("valgrind") is None:
        section.row("valgrind is not installed: not measured", "", "")
        return section
    names = [v for v in variants() if v in ("none", "noop", "usage_stats", "usage_stats_before")]
    kinds = ("starlette",) if quick else ("starlette", "fastapi")
    jobs = [(kind, v) for kind in kinds for v in names]
    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        counts = dict(zip(jobs, pool.map(lambda job: _per_request(job[0], job[1], layouts), jobs), strict=True))
    for kind in kinds:
        title = "Starlette" if kind == "starlette" else "FastAPI"
        bare = counts[(kind, "none")]["instructions"]
        floor = counts[(kind, "noop")]["instructions"] - bare
        section.row(f"{title}: {LABELS['none']}", f"{bare:,.0f} instructions/request", "1.00")
        multiples: dict[str, float] = {}
        for v in names[1:]:
            over = counts[(kind, v)]["instructions"] - bare
            multiples[v] = over / floor if floor > 0 else float("inf")
            ours = v != "noop"
            section.row(
                f"{title}: {LABELS[v]}",
                f"+{over:,.0f} instructions/request",
                f"+{over / bare:.1%} of bare" + (f", {multiples[v]:.2f}x the no-op's" if ours else ""),
                f"≤ {TARGET:.0f}x the no-op's" if ours else "",
                multiples[v] <= TARGET if ours else None,
            )
        _simulated(section, title, kind, names, counts)
        before = multiples.get("usage_stats_before")
        section.goal(
            f"{title}: overhead in instructions (valgrind), a multiple of the no-op middleware's",
            f"≤ {TARGET:.0f}x",
            "" if before is None else f"{before:.2f}x",
            f"{multiples['usage_stats']:.2f}x",
            multiples["usage_stats"] <= TARGET,
        )
    return section


def _simulated(
    section: Section, title: str, kind: str, names: list[str], counts: dict[tuple[str, str], dict[str, float]]
) -> None:
    """Rows of the simulated cache misses and mispredicts that each middleware adds to a request, with
    their multiple of the no-op's (the same multiple as its instructions would mean misses in step).
    Data misses move with the memory layout (objects' addresses decide which share a cache set), by a
    few hundred a request in FastAPI's run; instruction misses and mispredicts much less."""
    bare = counts[(kind, "none")]
    floor = {name: counts[(kind, "noop")][name] - bare[name] for name in SIMULATED}
    for v in names[1:]:
        added = {name: counts[(kind, v)][name] - bare[name] for name in SIMULATED}
        figure = ", ".join(f"{added[name]:+,.0f} {name}" for name in SIMULATED) + " a request"
        ratio = "" if v == "noop" else ", ".join(_multiple(added[n], floor[n]) for n in SIMULATED) + " the no-op's"
        section.row(f"{title}: {LABELS[v]}, simulated", figure, ratio)


def _multiple(over: float, floor: float) -> str:
    return f"{over / floor:.1f}x" if floor > 0 else "n/a"


def _main(argv: list[str]) -> None:
    kind, variant, passes = argv
    _worker(kind, variant, int(passes))


if __name__ == "__main__":
    _main(sys.argv[1:])
