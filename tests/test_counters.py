"""The in-memory counters: periods of the event, the key cap, take/restore, other threads (pure)."""

from __future__ import annotations

import gc
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any
from unittest.mock import patch
from zoneinfo import ZoneInfo

from hypothesis import example, given, settings
from hypothesis import strategies as st

from usage_stats import counters
from usage_stats.anonymise import AddressCutter
from usage_stats.counters import FOLD_AT, MAX_SLOTS, OTHER, Counters, KeySet, Pending, SeenKey
from usage_stats.periods import Calendar
from usage_stats.recorder import USER, VISITOR

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
    assert _keys(p) == {
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
    assert set(p.seen[date(2026, 3, 10)][("u", "user")]) == {"alice", "bob"}
    assert not c.take()


def test_pending_merge_and_truthiness() -> None:
    a, b = Pending(), Pending()
    assert not a
    b.counts[1] = {("c", "e"): 2}
    b.seen[date(2026, 1, 1)] = {("u", "user"): {"x": None}}
    a.merge(b)
    a.merge(b)
    assert a.counts == {1: {("c", "e"): 4}}
    assert a.seen[date(2026, 1, 1)][("u", "user")] == {"x": None}
    assert a
    assert not Pending(counts={1: {}}, seen={date(2026, 1, 1): {("u", "user"): {}}})


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
    assert _keys(p) == {date(2026, 3, 10): {("u", "user"): {"carol"}}}


def test_key_pressure_wakes_the_flusher() -> None:
    woken: list[int] = []
    c, _ = make(key_pressure=3, on_pressure=lambda: woken.append(1))
    for name in ("a", "b", "a", "c", "d"):
        c.seen("u", "user", name)
    assert woken == [1]


# -- the request path's slots against a model that counts every request at once ---------------------

ZONE = ZoneInfo("Europe/Berlin")
KEYS = [("page", "/a"), ("page", "/b"), ("api", "/c"), ("page", OTHER)]
STATUSES = [("status", "2xx"), ("status", "4xx")]
ADDRESSES = ["192.0.2.1", "192.0.2.77", "198.51.100.3", "2001:db8::1", "not an address"]
USERS = ["alice", "bob"]


class Model:
    """What pending must be: each request counted at once, in order, with the key cap; calls from
    other threads counted at the next read, with the time they happened."""

    def __init__(self, calendar: Calendar, max_keys: int) -> None:
        self.calendar = calendar
        self.max_keys = max_keys
        self.counts: dict[int, dict[tuple[str, str], int]] = {}
        self.seen: dict[date, dict[SeenKey, KeySet]] = {}
        self.queued: list[tuple[float, tuple[str, str], tuple[str, str], SeenKey | None, str | None]] = []

    def request(
        self, ts: float, key: tuple[str, str], status: tuple[str, str], seen: SeenKey | None, value: str | None
    ) -> None:
        slot = self.calendar.slot(ts)
        counts = self.counts.setdefault(slot.start, {})
        for k in (key, status):
            if k not in counts and len(counts) >= self.max_keys and k[0] != "status":
                k = (k[0], OTHER)
            counts[k] = counts.get(k, 0) + 1
        if seen is not None and value is not None:
            self.seen.setdefault(slot.day, {}).setdefault(seen, {})[value] = None

    def settle(self) -> Pending:
        for entry in self.queued:
            self.request(*entry)
        self.queued = []
        return Pending(self.counts, self.seen)


def _keys(p: Pending) -> dict[date, dict[SeenKey, set[str]]]:
    """The distinct keys pending, as sets."""
    return {day: {k: set(v) for k, v in s.items()} for day, s in p.seen.items()}


def _plain(p: Pending) -> tuple[dict[int, dict[tuple[str, str], int]], dict[date, dict[SeenKey, set[str]]]]:
    counts = {start: dict(c) for start, c in p.counts.items() if c}
    seen = {day: {k: set(v) for k, v in s.items() if v} for day, s in p.seen.items()}
    return counts, {day: s for day, s in seen.items() if s}


_op = st.one_of(
    st.tuples(st.just("hit"), st.integers(0, len(KEYS) - 1), st.integers(0, 1), st.booleans(), st.integers(0, 4)),
    st.tuples(st.just("request"), st.integers(0, len(KEYS) - 1), st.integers(0, 1), st.booleans(), st.integers(0, 4)),
    st.tuples(st.just("thread"), st.integers(0, len(KEYS) - 1), st.integers(0, 1), st.booleans(), st.integers(0, 4)),
    st.tuples(st.just("wait"), st.sampled_from([1, 600, 3599, 3600, 7200, 43_200, 86_400])),
    st.tuples(st.just("back"), st.sampled_from([1, 3600])),  # the wall clock steps back
    st.tuples(st.just("read")),
    st.tuples(st.just("take")),
    st.tuples(st.just("take_restore")),
)


@example(  # a slot admitted before a flush must not carry its key into the next one ahead of a new key
    ops=[
        ("hit", 0, 0, False, 0),
        ("hit", 0, 0, False, 1),
        ("take",),
        ("hit", 0, 0, False, 0),
        ("request", 1, 0, False, 0),
    ],
    max_keys=2,
    start=T0,
    fold_at=1024,
)
@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(_op, max_size=80),
    max_keys=st.sampled_from([2, 3, 100]),
    start=st.sampled_from([T0, datetime(2026, 3, 28, 23, 30, tzinfo=UTC).timestamp()]),  # DST in Berlin
    fold_at=st.sampled_from([1, 2, 1024]),
)
def test_slots_give_exactly_what_counting_each_request_at_once_gives(
    ops: list[tuple[Any, ...]], max_keys: int, start: float, fold_at: int
) -> None:
    now = Now()
    now.t = start
    calendar = Calendar(ZONE, timedelta(hours=1))
    c = Counters(calendar, now, max_keys_per_period=max_keys)
    model = Model(Calendar(ZONE, timedelta(hours=1)), max_keys)
    cutter = AddressCutter(24, 48)
    slots = {
        (k, s, user): c.slot(KEYS[k], STATUSES[s], USER if user else VISITOR, addresses=not user)
        for k in range(len(KEYS))
        for s in range(2)
        for user in (False, True)
    }
    taken: list[Pending] = []
    with patch.object(counters, "FOLD_AT", fold_at):
        for op in ops:
            kind = op[0]
            if kind in ("hit", "request", "thread"):
                _, k, s, user, v = op
                value = USERS[v % 2] if user else ADDRESSES[v]
                seen = USER if user else VISITOR
                recorded = value if user else cutter(value)
                if kind == "hit":
                    c.hit(slots[(k, s, user)], value)
                    model.request(now.t, KEYS[k], STATUSES[s], seen, recorded)
                elif kind == "request":
                    c.request(KEYS[k], STATUSES[s], seen, recorded)
                    model.request(now.t, KEYS[k], STATUSES[s], seen, recorded)
                else:
                    worker = threading.Thread(target=c.hit, args=(slots[(k, s, user)], value))
                    worker.start()
                    worker.join()
                    model.queued.append((now.t, KEYS[k], STATUSES[s], seen, recorded))
            elif kind == "wait":
                now.t += op[1]
            elif kind == "back":
                now.t -= op[1]
            elif kind == "read":
                assert _plain(c.peek()) == _plain(model.settle())
            elif kind == "take":
                assert _plain(c.take()) == _plain(model.settle())
                taken.append(Pending(model.counts, model.seen))
                model.counts, model.seen = {}, {}
            else:  # a flush that failed: everything comes back, merged with what follows
                got = c.take()
                assert _plain(got) == _plain(model.settle())
                c.restore(got)
        assert _plain(c.peek()) == _plain(model.settle())
        assert c.buffered() == 0  # a read folds every slot


def test_the_slots_stay_bounded_under_a_flood_without_a_flush() -> None:
    c, now = make(max_keys=10_000)
    slots = [c.slot(("page", f"/e{i}"), ("status", "2xx"), VISITOR, addresses=True) for i in range(2 * MAX_SLOTS)]
    most = 0
    for i in range(3 * FOLD_AT * MAX_SLOTS // 2):
        c.hit(slots[i % len(slots)], f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")  # all distinct
        if i % 997 == 0:
            most = max(most, c.buffered())
        if i == FOLD_AT * MAX_SLOTS:
            now.t += 3 * HOUR  # a new period: the slots are admitted again, in it
    assert most <= FOLD_AT * MAX_SLOTS
    assert sum(1 for s in slots if s.end) <= MAX_SLOTS  # the rest count each request at once
    p = c.peek()
    n = 3 * FOLD_AT * MAX_SLOTS // 2
    assert p.total_counts == 2 * n  # an event and a status per request, nothing lost
    assert p.total_keys == len({f"10.{i >> 16 & 255}.{i >> 8 & 255}.0" for i in range(n)})
    assert c.buffered() == 0


def test_binding_another_thread_folds_the_slots_and_lets_them_go() -> None:
    """A slot may be appended to only by the thread it was admitted on (`slot.owner`): when another
    thread becomes the owner, what the slots hold is folded and they are admitted afresh."""
    c, _ = make()
    slot = c.slot(("page", "/a"), ("status", "2xx"), VISITOR, clients=True)
    for i in range(3):
        c.hit(slot, (f"198.51.100.{i}", 1))  # the first is counted at once and admits the slot
    assert c.buffered() == 2
    assert slot.owner == threading.get_ident()
    other = threading.Thread(target=c.bind_to_current_thread)
    other.start()
    other.join()
    assert c.buffered() == 0
    assert slot.end == 0
    c.hit(slot, ("198.51.100.9", 1))  # from the old owner: queued for the new one, not appended
    assert slot.values == []
    c.bind_to_current_thread()
    p = c.peek()
    assert p.total_counts == 2 * 4
    assert _keys(p) == {date(2026, 3, 10): {VISITOR: {"198.51.100.0"}}}


def test_pending_keys_are_invisible_to_the_garbage_collector() -> None:
    """Every group of distinct keys, however it was filled (a key at once, a folded slot of client
    pairs or user IDs, another thread's queue, a failed flush given back), is a container that the
    garbage collector does not track: a collection of the host app never walks a million visitors."""
    c, now = make()
    c.seen("u", "user", "alice")  # at once
    c.request(("page", "/r"), ("status", "2xx"), VISITOR, "192.0.2.0")  # at once, with a request
    clients = c.slot(("page", "/a"), ("status", "2xx"), VISITOR, clients=True)
    users = c.slot(("page", "/a"), ("status", "2xx"), USER)
    for i in range(3):  # the first of each admits the slot, the next ones are folded
        c.hit(clients, (f"198.51.100.{i}", 1))
        c.hit(users, f"user-{i}")
    queued = threading.Thread(target=c.seen, args=("u", "staff", "bob"))  # queued by another thread
    queued.start()
    queued.join()
    taken = c.take()
    c.seen("v", "visitor", "203.0.113.0")
    c.restore(taken)  # merged with what came since
    now.t += 24 * HOUR
    c.seen("u", "user", "carol")  # another day
    p = c.peek()
    groups = [(day, key, group) for day, seen in p.seen.items() for key, group in seen.items()]
    assert _keys(p) == {
        date(2026, 3, 10): {
            USER: {"alice", "user-0", "user-1", "user-2"},
            VISITOR: {"192.0.2.0", "198.51.100.0", "203.0.113.0"},
            ("u", "staff"): {"bob"},
        },
        date(2026, 3, 11): {USER: {"carol"}},
    }
    assert [(day, key) for day, key, group in groups if gc.is_tracked(group)] == []
