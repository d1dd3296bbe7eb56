"""The recorder's hand-over to a flush: count keys capped across flushes a slice at a time, with a
turn of the event loop between slices, and nothing lost when the flush is cancelled meanwhile
(issue 12, item 3: `Recorder.take()` held the loop for 40-60 ms on 100,000 new keys)."""

from __future__ import annotations

import random
from collections.abc import Generator

import anyio
import pytest

from tests.conftest import StatsFactory
from usage_stats.counters import OTHER, STATUS, CountKey, Pending
from usage_stats.recorder import CAP_SLICE, KnownKeys, Recorder, capping


def _capped_at_once(pending: Pending, admitted: dict[int, set[CountKey]], max_keys: int) -> int:
    """The rule in one pass (the code before slicing): keys new to a period whose quota is used go
    to `<other>` of their category, in the order they were counted."""
    folded = 0
    for start, counts in pending.counts.items():
        known = admitted.setdefault(start, set())
        for key in [k for k in counts if k not in known and k[0] != STATUS and k[1] != OTHER]:
            if len(known) < max_keys:
                known.add(key)
                continue
            counts[(key[0], OTHER)] = counts.get((key[0], OTHER), 0) + counts.pop(key)
            folded += 1
    for start in sorted(admitted)[:-2]:
        del admitted[start]
    return folded


def _finish(steps: Generator[None, None, int]) -> int:
    """Run `capping` to its end, slice after slice; how many keys it folded."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            folded: int = done.value
            return folded


def _random_case(rng: random.Random) -> tuple[Pending, dict[int, set[CountKey]], int]:
    keys = [(rng.choice(["page", "api", STATUS]), f"/e{rng.randrange(60)}") for _ in range(rng.randrange(120))]
    keys += [("page", OTHER)] * rng.randrange(2)
    counts: dict[int, dict[CountKey, int]] = {}
    for key in keys:
        period = counts.setdefault(rng.choice([0, 3600, 7200]), {})
        period[key] = period.get(key, 0) + rng.randrange(1, 5)
    admitted = {start: set(rng.sample(keys, min(len(keys), rng.randrange(10)))) for start in (0, 3600)}
    return Pending(counts), admitted, rng.randrange(1, 40)


def _known(admitted: dict[int, set[CountKey]]) -> dict[int, KnownKeys]:
    return {start: KnownKeys(keys) for start, keys in admitted.items()}


@pytest.mark.parametrize("seed", range(200))
def test_capping_a_slice_at_a_time_gives_what_one_pass_gives(seed: int) -> None:
    rng = random.Random(seed)
    pending, plain, max_keys = _random_case(rng)
    admitted = _known(plain)
    expected_pending, expected_admitted = _random_case(random.Random(seed))[:2]
    expected_folded = _capped_at_once(expected_pending, expected_admitted, max_keys)
    assert _finish(capping(pending, admitted, max_keys, slice_size=rng.randrange(1, 8))) == expected_folded
    assert pending.counts == expected_pending.counts
    assert [list(c) for c in pending.counts.values()] == [list(c) for c in expected_pending.counts.values()]
    assert {start: known.keys() for start, known in admitted.items()} == expected_admitted
    assert all(len(known) == len(known.keys()) for known in admitted.values())
    assert pending.total_counts == expected_pending.total_counts


def test_capping_folds_the_keys_past_the_quota_into_other() -> None:
    pending = Pending({0: {("page", f"/e{i}"): 1 for i in range(10_000)}})
    assert _finish(capping(pending, {}, 100)) == 9_900
    assert pending.counts[0][("page", OTHER)] == 9_900
    assert len(pending.counts[0]) == 101


async def test_a_flush_of_many_new_keys_caps_them_with_turns_of_the_event_loop(make_stats: StatsFactory) -> None:
    """The flush drives `Recorder.cap` with a turn of the loop between slices: another task runs
    between any two slices (before: all keys in one step of the loop)."""
    n = 3 * CAP_SLICE + 10
    ticks = 0
    between: list[int] = []  # the other task's ticks seen at each slice boundary
    cap = Recorder.cap

    def watched(recorder: Recorder, taken: Pending):  # type: ignore[no-untyped-def]
        for step in cap(recorder, taken):
            between.append(ticks)
            yield step

    async with make_stats(max_keys_per_period=10 * n) as stats:
        for i in range(n):
            stats.count(f"/event/{i}", "page")
        async with anyio.create_task_group() as tg:

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await anyio.lowlevel.checkpoint()

            tg.start_soon(ticker)
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(Recorder, "cap", watched)
                await stats.flush()
            tg.cancel_scope.cancel()
        table = await stats.table("day")
    assert len(between) == 3  # three slice boundaries for n keys
    assert all(b > a for a, b in zip([0, *between], between, strict=False))  # the ticker ran between slices
    assert sum(r.value for p in table.periods for r in p.rows if r.category == "page") == n


async def test_a_flush_cancelled_while_capping_gives_back_what_it_took(make_stats: StatsFactory) -> None:
    n = 2 * CAP_SLICE
    async with make_stats(max_keys_per_period=10 * n) as stats:
        for i in range(n):
            stats.count(f"/event/{i}", "page")
        cap = Recorder.cap
        cancelled = anyio.CancelScope()

        def cancel_midway(recorder: Recorder, taken: Pending):  # type: ignore[no-untyped-def]
            for step in cap(recorder, taken):
                cancelled.cancel()
                yield step

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Recorder, "cap", cancel_midway)
            with cancelled:
                await stats.flush()
        assert cancelled.cancelled_caught
        assert stats.pending.total_counts == n  # nothing lost: back in the recorder
        await stats.flush()
        table = await stats.table("day")
    assert sum(r.value for p in table.periods for r in p.rows if r.category == "page") == n


def test_a_period_of_many_admitted_keys_grows_a_small_set_at_a_time() -> None:
    """The keys a period admitted are spread over shards by hash: a set rehashes all its keys when it
    grows, and capping 100,000 new keys into one set of 200,000 held the event loop for 20 ms."""
    admitted: dict[int, KnownKeys] = {}
    for flush in range(3):
        pending = Pending({0: {("page", f"/e{flush}/{i}"): 1 for i in range(100_000)}})
        assert _finish(capping(pending, admitted, 250_000)) == (0 if flush < 2 else 50_000)
    known = admitted[0]
    assert len(known) == len(known.keys()) == 250_000
    assert max(len(shard) for shard in known.shards) < 250_000 / 32  # none holds more than twice its share
    assert ("page", "/e2/49999") in known
    assert ("page", "/e2/50000") not in known
