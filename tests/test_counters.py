"""The in-memory counters: periods of the event, the key cap, take/restore, other threads (pure)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from usage_stats.counters import OTHER, Counters, Pending
from usage_stats.periods import Calendar

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()
HOUR = 3600


class Now:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def make(max_keys: int = 100, **kw: object) -> tuple[Counters, Now]:
    now = Now()
    cal = Calendar(ZoneInfo("UTC"), timedelta(hours=1))
    return Counters(cal, now, max_keys_per_period=max_keys, **kw), now  # type: ignore[arg-type]


def test_counts_are_filed_under_the_period_they_happen_in() -> None:
    c, now = make()
    c.add("page", "/a")
    c.add("page", "/a", 2)
    now.t += HOUR
    c.add("page", "/a")
    c.add("page", "/b", 5, ts=T0 + 10)  # a late record for the first hour
    p = c.take()
    assert p.counts == {int(T0): {("page", "/a"): 3, ("page", "/b"): 5}, int(T0) + HOUR: {("page", "/a"): 1}}
    assert p.total_counts == 9


def test_same_event_in_two_categories_is_two_keys() -> None:
    c, _ = make()
    c.add("page", "x")
    c.add("api", "x")
    assert c.take().counts[int(T0)] == {("page", "x"): 1, ("api", "x"): 1}


def test_distinct_keys_are_per_day_not_per_period() -> None:
    c, now = make()
    c.seen("u", "user", "alice")
    now.t += 3 * HOUR
    c.seen("u", "user", "alice")
    c.seen("v", "visitor", "192.0.2.0")
    now.t += 12 * HOUR  # the next day
    c.seen("u", "user", "alice")
    p = c.take()
    assert p.seen == {
        date(2026, 3, 10): {("u", "user"): {"alice"}, ("v", "visitor"): {"192.0.2.0"}},
        date(2026, 3, 11): {("u", "user"): {"alice"}},
    }
    assert p.total_keys == 3


def test_key_cap_sends_new_events_to_other_but_not_status() -> None:
    c, _ = make(max_keys=2)
    c.add("page", "/a")
    c.add("page", "/b")
    c.add("page", "/c")
    c.add("page", "/d", 4)
    c.add("page", "/a")  # an existing key still counts as itself
    for i in range(5):
        c.add("status", f"{i}xx")
    counts = c.take().counts[int(T0)]
    assert counts[("page", "/a")] == 2
    assert counts[("page", "/b")] == 1
    assert counts[("page", OTHER)] == 5
    assert ("page", "/c") not in counts
    assert sum(1 for k in counts if k[0] == "status") == 5
    assert sum(counts.values()) == 13  # nothing lost


def test_take_swaps_and_restore_merges_with_new_counts() -> None:
    c, _ = make()
    c.add("page", "/a", 2)
    c.seen("u", "user", "alice")
    taken = c.take()
    assert not c.peek()
    c.add("page", "/a", 3)
    c.seen("u", "user", "bob")
    c.restore(taken)  # the flush failed
    p = c.take()
    assert p.counts[int(T0)] == {("page", "/a"): 5}
    assert p.seen[date(2026, 3, 10)][("u", "user")] == {"alice", "bob"}
    assert not c.take()


def test_pending_merge_and_truthiness() -> None:
    a, b = Pending(), Pending()
    assert not a
    b.counts[1] = {("c", "e"): 2}
    b.seen[date(2026, 1, 1)] = {("u", "user"): {"x"}}
    a.merge(b)
    a.merge(b)
    assert a.counts == {1: {("c", "e"): 4}}
    assert a.seen[date(2026, 1, 1)][("u", "user")] == {"x"}
    assert a
    assert not Pending(counts={1: {}}, seen={date(2026, 1, 1): {("u", "user"): set()}})


def test_other_threads_queue_and_the_owner_applies_with_their_time() -> None:
    c, now = make()
    c.bind_to_current_thread()

    def work() -> None:
        for _ in range(1000):
            c.add("page", "/sync")
        c.seen("u", "user", "carol")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    read_elsewhere: list[bool] = []
    reader = threading.Thread(target=lambda: read_elsewhere.append(bool(c.peek())))
    reader.start()
    reader.join()
    assert read_elsewhere == [False]  # another thread's read applies nothing: only the owner updates the dicts
    now.t += 5 * HOUR  # applied later, still filed under the hour they happened in
    assert c.peek().counts == {int(T0): {("page", "/sync"): 4000}}  # the owner's read applies them
    p = c.take()
    assert p.counts == {int(T0): {("page", "/sync"): 4000}}
    assert p.seen == {date(2026, 3, 10): {("u", "user"): {"carol"}}}


def test_key_pressure_wakes_the_flusher() -> None:
    woken: list[int] = []
    c, _ = make(key_pressure=3, on_pressure=lambda: woken.append(1))
    for name in ("a", "b", "a", "c", "d"):
        c.seen("u", "user", name)
    assert woken == [1]
