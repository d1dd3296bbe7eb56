"""Benchmark 1's interval for a multiple of the no-op's: narrow when the rounds agree, wide when the
floor it is divided by is lost in the noise, and always around the multiple itself."""

from __future__ import annotations

import random

from benchmarks.inprocess import _overheads, _ratio, interval


def _rounds(noise: float, seed: int = 3) -> dict[str, list[float]]:
    """40 rounds: bare 20 µs, the no-op +1 µs, ours +2.5 µs, each time with Gaussian `noise` (µs)."""
    rng = random.Random(seed)
    times: dict[str, list[float]] = {"none": [], "noop": [], "usage_stats": []}
    for _ in range(40):
        for name, added in (("none", 0.0), ("noop", 1.0), ("usage_stats", 2.5)):
            times[name].append((20.0 + added + rng.gauss(0, noise)) * 1e-6)
    return times


def test_the_interval_holds_the_multiple_and_is_narrow_when_the_rounds_agree() -> None:
    times = _rounds(noise=0.05)
    over = _overheads(times)
    multiple = _ratio(over, "usage_stats", over["noop"])
    low, high = interval(times, "usage_stats")
    assert low <= multiple <= high
    assert low > 2.3  # 2.5x, give or take the 0.05 µs noise
    assert high < 2.7
    assert interval(times, "usage_stats") == (low, high)  # seeded: the same figures every time


def test_the_interval_is_wide_when_the_noise_is_larger_than_the_floor() -> None:
    narrow = interval(_rounds(noise=0.05), "usage_stats")
    times = _rounds(noise=1.5)
    over = _overheads(times)
    low, high = interval(times, "usage_stats")
    assert low <= _ratio(over, "usage_stats", over["noop"]) <= high
    assert high - low > 5 * (narrow[1] - narrow[0])
