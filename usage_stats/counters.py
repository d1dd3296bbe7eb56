"""In-memory counters: the hot path. Synchronous dict updates, no I/O, no await, no lock.

Counts are filed under the base period in which they happen and distinct keys under their day.
The flusher takes everything with `take()` (a swap, not a copy) and, if the save fails, gives
it back with `restore()`, so nothing recorded is ever dropped.

Requests come through a `Slot`: one per (count key, status key, user or visitor) that the middleware
has seen. Once a request has filed a slot's count key and status key in a base period (in order,
through the key cap), the slot is *admitted* to that period, and its next requests there only append
their user ID or client address (or the ASGI `client` pair it is the first item of) to the slot's
list: one time check and one append. `UsageMiddleware` inlines that fast path (`hit`, less the call):
while `slot.start <= now < slot.end` on thread `slot.owner`, append to `slot.values` and call `fold`
once it holds `FOLD_AT` values. The list is
folded into the counts (its length, twice) and the day's keys (a union at C speed; addresses cut to
their network through a cache) when it is full, when a request falls in another period, and on
every read (`settle`, `peek`, `take`, `drain`). Only keys already counted in the period ride a
slot, so folding late never changes which new keys the cap sends to `<other>`: what is pending is
exactly what counting each request at once would give. `take()` and `restore()` un-admit every slot.

Only the owner thread (the event loop's) updates the dicts. Calls from other threads, such as
FastAPI's sync endpoints running in a thread pool, are queued on a deque (its append is atomic)
and applied by the owner before each read, with the time they happened.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from itertools import repeat
from operator import itemgetter
from typing import Any

from .anonymise import AddressCutter
from .kinds import COUNT, EntryKind, SeenKind
from .periods import Calendar

__all__ = [
    "FOLD_AT",
    "MAX_SLOTS",
    "OTHER",
    "STATUS",
    "Bucket",
    "CountKey",
    "Counters",
    "KeySet",
    "Pending",
    "SeenKey",
    "Slot",
]

_get_ident = threading.get_ident
_first: Callable[[Any], object] = itemgetter(0)
_PAIRS = frozenset((tuple, list))  # the shapes of an ASGI `client` whose first item `fold` takes at C speed

OTHER = "<other>"
STATUS = "status"
CountKey = tuple[str, str]  # (category, event)
SeenKey = tuple[SeenKind, str]  # (USER or VISITOR, category)
# The distinct keys of a group, as the keys of a dict (values None) rather than a set: a dict that
# holds only strings is never tracked by the garbage collector, whereas a set is always tracked, and
# every collection that reaches it walks all its keys (a million visitors added 66 to 70 ms to each
# full collection of the host app's heap; `benchmarks/memory.py`, `tests/test_counters.py`).
KeySet = dict[str, None]


class Bucket:
    """The counts of one base period, and the distinct keys of its day."""

    __slots__ = ("counts", "day", "end", "seen", "start")

    def __init__(self, start: int, end: int, day: date, counts: dict[CountKey, int], seen: dict[SeenKey, KeySet]):
        self.start = start
        self.end = end
        self.day = day
        self.counts = counts
        self.seen = seen


_EMPTY = Bucket(0, 0, date.min, {}, {})

FOLD_AT = 1024  # a slot's list is folded when it holds this many requests
MAX_SLOTS = 256  # slots admitted at once (a flush un-admits them): at most FOLD_AT * MAX_SLOTS requests held


def _host(client: object) -> str | None:
    """The address of an ASGI `client` pair (None: no usable client)."""
    host = client[0] if isinstance(client, (tuple, list)) and client else None
    return host if type(host) is str else None


class Slot:
    """The requests of one (count key, status key, user or visitor), as `Counters.slot` made it.

    `values` holds one user ID or client address (None: no visitor) per request not folded yet, all
    in the base period `period` (its start) of local day `day` to which the slot is admitted; `start`
    and `end` are its bounds as floats, compared with the clock's float at C speed (a float compared
    with an int takes CPython's slow path). Not admitted: start = end = 0.
    """

    __slots__ = ("addresses", "clients", "day", "end", "key", "owner", "period", "seen", "start", "status", "values")

    def __init__(self, key: CountKey, status: CountKey, seen: SeenKey, addresses: bool, clients: bool = False) -> None:
        self.key = key
        self.status = status
        self.seen = seen
        self.addresses = addresses or clients  # values are client addresses, cut to their network when folded
        self.clients = clients  # values are ASGI `client` pairs (host, port), the address their first item
        self.values: list[object] = []
        self.period = 0
        self.owner = 0  # the thread that may append: the counters' owner when the slot was admitted
        self.start = 0.0
        self.end = 0.0
        self.day = date.min


@dataclass
class Pending:
    """Everything recorded since the last flush: counts per period start, keys per day."""

    counts: dict[int, dict[CountKey, int]] = field(default_factory=dict)
    seen: dict[date, dict[SeenKey, KeySet]] = field(default_factory=dict)

    def merge(self, other: Pending) -> None:
        """Add `other` into this one (counts summed, keys united)."""
        for start, counts in other.counts.items():
            mine = self.counts.setdefault(start, {})
            for key, n in counts.items():
                mine[key] = mine.get(key, 0) + n
        for day, seen in other.seen.items():
            mine_seen = self.seen.setdefault(day, {})
            for key, values in seen.items():
                mine_seen.setdefault(key, {}).update(values)

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

    # Slots, not a __dict__: `hit` reads `now` on every request, with the rest of the app's
    # request in the CPU caches; one object is fewer cache lines to fetch than an object and its dict.
    __slots__ = (
        "_admitted",
        "_bucket",
        "_inbox",
        "_new_keys",
        "_pending",
        "calendar",
        "cut",
        "key_pressure",
        "max_keys",
        "now",
        "on_pressure",
        "owner",
    )

    def __init__(
        self,
        calendar: Calendar,
        now: Callable[[], float],
        *,
        max_keys_per_period: int,
        key_pressure: int = 200_000,
        on_pressure: Callable[[], None] | None = None,
        cut: AddressCutter | None = None,
    ) -> None:
        self.calendar = calendar
        self.cut = cut if cut is not None else AddressCutter(24, 48)
        self.now = now
        self.max_keys = max_keys_per_period
        self.key_pressure = key_pressure
        self.on_pressure = on_pressure
        self.owner = threading.get_ident()
        self._pending = Pending()
        self._bucket = _EMPTY
        self._new_keys = 0
        self._inbox: deque[tuple[float, EntryKind, str, str, int]] = deque()
        self._admitted: list[Slot] = []

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
        and, unless `seen` or `value` is None, the distinct key `value` in group `seen`.

        The same as `add(*key)`, `add(*status)` and `seen(*seen, value)` at one instant.
        """
        ts = self.now()
        if _get_ident() != self.owner:
            self._queue(ts, key, status, seen, value)
            return
        self._request_at(ts, key, status, seen, value)

    def slot(
        self, key: CountKey, status: CountKey, seen: SeenKey, *, addresses: bool = False, clients: bool = False
    ) -> Slot:
        """A slot for requests counting `key` and `status` and a distinct key in group `seen` (the
        values passed to `hit`: user IDs; client addresses when `addresses`, or ASGI `client` pairs
        when `clients`, cut when folded)."""
        return Slot(key, status, seen, addresses, clients)

    def hit(self, slot: Slot, value: object) -> None:
        """Count one request of `slot` now, with its user ID or client address `value` (None: no
        distinct key). The same as `request(slot.key, slot.status, slot.seen, value)`, cut first."""
        ts = self.now()
        if slot.start <= ts < slot.end and _get_ident() == slot.owner:
            values = slot.values
            values.append(value)
            if len(values) >= FOLD_AT:
                self.fold(slot)
            return
        self._hit_slowly(slot, ts, value)

    def _hit_slowly(self, slot: Slot, ts: float, value: object) -> None:
        """A request outside the slot's period, or before it is admitted, or from another thread: counted
        at once, in order, and the slot admitted to the period if its keys are now counted there as
        themselves (a key sent to `<other>` by the cap keeps going this way)."""
        host = _host(value) if slot.clients else value
        network = (self.cut(host) if type(host) is str else None) if slot.addresses else host
        if type(network) is not str:
            network = None  # no usable client (a user ID is a string before it reaches a slot)
        if _get_ident() != self.owner:
            self._queue(ts, slot.key, slot.status, slot.seen, network)
            return
        self.fold(slot)
        b = self._request_at(ts, slot.key, slot.status, slot.seen, network)
        if b is self._bucket and slot.key in b.counts and slot.status in b.counts:
            if slot.end == 0:
                if len(self._admitted) >= MAX_SLOTS:
                    return
                self._admitted.append(slot)
            slot.period, slot.start, slot.end, slot.day = b.start, float(b.start), float(b.end), b.day
            slot.owner = self.owner

    def fold(self, slot: Slot) -> None:
        """Add the slot's requests to its period's counts and its day's keys (owner thread only)."""
        chunk = slot.values
        n = len(chunk)
        if not n:
            return
        slot.values = []
        pending = self._pending
        counts = pending.counts.get(slot.period)
        if counts is None:
            counts = pending.counts[slot.period] = {}
        counts[slot.key] = counts.get(slot.key, 0) + n
        counts[slot.status] = counts.get(slot.status, 0) + n
        found: set[object]
        if slot.clients:
            # At C speed when every client is a plain tuple or list (the address is its first item:
            # a first item that is no string is dropped by `cut_all`); any other shape (None, a
            # mapping, a string, an empty pair: a broken server) takes `_host`, the general rule.
            if _PAIRS.issuperset(map(type, chunk)):
                try:
                    found = set(map(_first, chunk))
                except IndexError:  # an empty pair
                    found = set(map(_host, chunk))
            else:
                found = set(map(_host, chunk))
        else:
            try:
                found = set(chunk)
            except TypeError:  # an address that is no string (a broken server): no visitor
                found = {value for value in chunk if type(value) is str}
        found.discard(None)
        values: set[str] = self.cut.cut_all(found) if slot.addresses else found  # type: ignore[arg-type,assignment]
        if not values:
            return
        seen = pending.seen.get(slot.day)
        if seen is None:
            seen = pending.seen[slot.day] = {}
        group = seen.get(slot.seen)
        if group is None:
            group = seen[slot.seen] = {}
        new = values.difference(group)  # at C speed, with the hashes the set has; mostly empty (repeat visitors)
        if new:
            # Pairs, not `dict.fromkeys(new)`: a dict made from a set is laid out for keys of any
            # type, and merging it would make the group so too (half as big again as one of strings).
            group.update(zip(new, repeat(None)))
            self._new_keys_seen(len(new))

    def _new_keys_seen(self, new: int) -> None:
        if not new:
            return
        was = self._new_keys
        self._new_keys = was + new
        if was < self.key_pressure <= self._new_keys and self.on_pressure is not None:
            self.on_pressure()

    def _queue(self, ts: float, key: CountKey, status: CountKey, seen: SeenKey | None, value: str | None) -> None:
        inbox = self._inbox
        inbox.append((ts, COUNT, key[0], key[1], 1))
        inbox.append((ts, COUNT, status[0], status[1], 1))
        if seen is not None and value is not None:
            inbox.append((ts, seen[0], seen[1], value, 0))

    def _request_at(
        self, ts: float, key: CountKey, status: CountKey, seen: SeenKey | None, value: str | None
    ) -> Bucket:
        """`request` at instant `ts` (owner thread only); returns the bucket it was filed in."""
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
            return b
        group = b.seen.get(seen)
        if group is None:
            group = b.seen[seen] = {}
        if value not in group:
            group[value] = None
            self._new_keys_seen(1)
        return b

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
            group = seen[(kind, category)] = {}
        if value not in group:
            group[value] = None
            self._new_keys_seen(1)

    def bind_to_current_thread(self) -> None:
        """Make the calling thread (the event loop's) the one that updates the dicts. Slots admitted
        under another owner are folded and let go (only their owner may append to them)."""
        owner = threading.get_ident()
        if owner != self.owner:
            self.owner = owner
            self.settle()
            self._unadmit()

    def drain(self) -> None:
        """Apply what other threads queued and fold every slot (owner thread only)."""
        self.settle()

    def settle(self) -> None:
        """Make what is pending exact: fold every admitted slot and apply the other threads' queue.
        Only on the owner thread (elsewhere it does nothing: only the owner updates the dicts)."""
        if _get_ident() != self.owner:
            return
        for slot in self._admitted:
            if slot.values:
                self.fold(slot)
        inbox = self._inbox
        while inbox:
            ts, kind, category, name, n = inbox.popleft()
            if kind == COUNT:
                self.add(category, name, n, ts)
            else:
                self.seen(kind, category, name, ts)

    def _unadmit(self) -> None:
        for slot in self._admitted:
            slot.start = slot.end = 0.0
        self._admitted = []

    def take(self) -> Pending:
        """Take everything pending and start afresh (owner thread only)."""
        self.settle()
        self._unadmit()
        taken = self._pending
        self._pending = Pending()
        self._bucket = _EMPTY
        self._new_keys = 0
        return taken

    def restore(self, taken: Pending) -> None:
        """Give back what a failed flush took; it is merged with what arrived since."""
        self.settle()
        self._unadmit()
        taken.merge(self._pending)
        self._pending = taken
        self._bucket = _EMPTY

    def peek(self) -> Pending:
        """What is pending now, settled first (see `settle`), without taking it."""
        self.settle()
        return self._pending

    def buffered(self) -> int:
        """How many requests the slots hold, not folded yet (bounded by `FOLD_AT * MAX_SLOTS`)."""
        return sum(len(slot.values) for slot in self._admitted)
