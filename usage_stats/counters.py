"""In-memory counters: the hot path. Synchronous dict updates, no I/O, no await, no lock.

Counts are filed under the base period in which they happen and distinct keys under their day.
The flusher takes everything with `take()` (a swap, not a copy) and, if the save fails, gives
it back with `restore()`, so nothing recorded is ever dropped.

Only the owner thread (the event loop's) updates the dicts. Calls from other threads, such as
FastAPI's sync endpoints running in a thread pool, are queued on a deque (its append is atomic)
and applied by the owner before each flush, with the time they happened.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from .kinds import COUNT, EntryKind, SeenKind
from .periods import Calendar

__all__ = ["OTHER", "STATUS", "Bucket", "CountKey", "Counters", "Pending", "SeenKey"]

_get_ident = threading.get_ident

OTHER = "<other>"
STATUS = "status"
CountKey = tuple[str, str]  # (category, event)
SeenKey = tuple[SeenKind, str]  # (USER or VISITOR, category)


class Bucket:
    """The counts of one base period, and the distinct keys of its day."""

    __slots__ = ("counts", "day", "end", "seen", "start")

    def __init__(self, start: int, end: int, day: date, counts: dict[CountKey, int], seen: dict[SeenKey, set[str]]):
        self.start = start
        self.end = end
        self.day = day
        self.counts = counts
        self.seen = seen


_EMPTY = Bucket(0, 0, date.min, {}, {})


@dataclass
class Pending:
    """Everything recorded since the last flush: counts per period start, keys per day."""

    counts: dict[int, dict[CountKey, int]] = field(default_factory=dict)
    seen: dict[date, dict[SeenKey, set[str]]] = field(default_factory=dict)

    def merge(self, other: Pending) -> None:
        """Add `other` into this one (counts summed, key sets united)."""
        for start, counts in other.counts.items():
            mine = self.counts.setdefault(start, {})
            for key, n in counts.items():
                mine[key] = mine.get(key, 0) + n
        for day, seen in other.seen.items():
            mine_seen = self.seen.setdefault(day, {})
            for key, values in seen.items():
                mine_seen.setdefault(key, set()).update(values)

    @property
    def total_counts(self) -> int:
        """The sum of all counts."""
        return sum(sum(c.values()) for c in self.counts.values())

    @property
    def total_keys(self) -> int:
        """The number of distinct keys, over all days and categories."""
        return sum(len(s) for seen in self.seen.values() for s in seen.values())

    def __bool__(self) -> bool:
        return any(self.counts.values()) or any(any(s.values()) for s in self.seen.values())


class Counters:
    """The recorder's memory. `now` returns Unix seconds (the configured clock)."""

    def __init__(
        self,
        calendar: Calendar,
        now: Callable[[], float],
        *,
        max_keys_per_period: int,
        key_pressure: int = 200_000,
        on_pressure: Callable[[], None] | None = None,
    ) -> None:
        self.calendar = calendar
        self.now = now
        self.max_keys = max_keys_per_period
        self.key_pressure = key_pressure
        self.on_pressure = on_pressure
        self.owner = threading.get_ident()
        self._pending = Pending()
        self._bucket = _EMPTY
        self._new_keys = 0
        self._inbox: deque[tuple[float, EntryKind, str, str, int]] = deque()

    def bucket(self, ts: float) -> Bucket:
        """The bucket of the base period holding `ts`."""
        b = self._bucket
        if b.start <= ts < b.end:
            return b
        slot = self.calendar.slot(ts)
        pending = self._pending
        counts = pending.counts.get(slot.start)
        if counts is None:
            counts = pending.counts[slot.start] = {}
        seen = pending.seen.get(slot.day)
        if seen is None:
            seen = pending.seen[slot.day] = {}
        b = Bucket(slot.start, slot.end, slot.day, counts, seen)
        if ts >= self._bucket.start:  # keep the newest period cached, not a late one
            self._bucket = b
        return b

    def add(self, category: str, event: str, n: int = 1, ts: float | None = None) -> None:
        """Add `n` to the count of (category, event) in the period of `ts` (default: now)."""
        if ts is None:
            ts = self.now()
        if _get_ident() != self.owner:
            self._inbox.append((ts, COUNT, category, event, n))
            return
        b = self._bucket
        if not b.start <= ts < b.end:
            b = self.bucket(ts)
        counts = b.counts
        key = (category, event)
        old = counts.get(key)
        if old is None:
            if len(counts) >= self.max_keys and category != STATUS:
                key = (category, OTHER)
                old = counts.get(key, 0)
            else:
                old = 0
        counts[key] = old + n

    def request(self, key: CountKey, status: CountKey, seen: SeenKey | None, value: str | None) -> None:
        """Count one request now: `key` (category, event), `status` (category `status`, never capped)
        and, unless `seen` is None, the distinct key `value` in group `seen`; one bucket lookup.

        The same as `add(*key)`, `add(*status)` and `seen(*seen, value)` at one instant.
        """
        ts = self.now()
        if _get_ident() != self.owner:
            inbox = self._inbox
            inbox.append((ts, COUNT, key[0], key[1], 1))
            inbox.append((ts, COUNT, status[0], status[1], 1))
            if seen is not None and value is not None:
                inbox.append((ts, seen[0], seen[1], value, 0))
            return
        b = self._bucket
        if not b.start <= ts < b.end:
            b = self.bucket(ts)
        counts = b.counts
        old = counts.get(key)
        if old is None:
            if len(counts) >= self.max_keys and key[0] != STATUS:
                key = (key[0], OTHER)
                old = counts.get(key, 0)
            else:
                old = 0
        counts[key] = old + 1
        old = counts.get(status)
        if old is None and len(counts) >= self.max_keys and status[0] != STATUS:
            status = (status[0], OTHER)
            old = counts.get(status)
        counts[status] = 1 if old is None else old + 1
        if seen is None or value is None:
            return
        group = b.seen.get(seen)
        if group is None:
            group = b.seen[seen] = set()
        if value not in group:
            group.add(value)
            self._new_keys += 1
            if self._new_keys == self.key_pressure and self.on_pressure is not None:
                self.on_pressure()

    def seen(self, kind: SeenKind, category: str, value: str, ts: float | None = None) -> None:
        """Note that key `value` (a user ID or a cut address) was seen today in `category`."""
        if ts is None:
            ts = self.now()
        if _get_ident() != self.owner:
            self._inbox.append((ts, kind, category, value, 0))
            return
        b = self._bucket
        if not b.start <= ts < b.end:
            b = self.bucket(ts)
        seen = b.seen
        group = seen.get((kind, category))
        if group is None:
            group = seen[(kind, category)] = set()
        if value not in group:
            group.add(value)
            self._new_keys += 1
            if self._new_keys == self.key_pressure and self.on_pressure is not None:
                self.on_pressure()

    def bind_to_current_thread(self) -> None:
        """Make the calling thread (the event loop's) the one that updates the dicts."""
        self.owner = threading.get_ident()

    def drain(self) -> None:
        """Apply what other threads queued (owner thread only)."""
        inbox = self._inbox
        while inbox:
            ts, kind, category, name, n = inbox.popleft()
            if kind == COUNT:
                self.add(category, name, n, ts)
            else:
                self.seen(kind, category, name, ts)

    def take(self) -> Pending:
        """Take everything pending and start afresh (owner thread only)."""
        self.drain()
        taken = self._pending
        self._pending = Pending()
        self._bucket = _EMPTY
        self._new_keys = 0
        return taken

    def restore(self, taken: Pending) -> None:
        """Give back what a failed flush took; it is merged with what arrived since."""
        taken.merge(self._pending)
        self._pending = taken
        self._bucket = _EMPTY

    def peek(self) -> Pending:
        """What is pending now, without taking it (for reports and tests)."""
        return self._pending
