"""A flush's rows, made slice by slice so that the event loop is never held for long.

Names are cleaned and counts merged and saturated (`count_records`), distinct keys encoded with the
day's salt (`key_records`), at most `SLICE` rows at a time; between two slices the generators give
the event loop a turn, so the requests served beside a flush of any size wait at most for one slice
(a millisecond or two). Rows come numbered from 1 in the order they are made: a statement can then
take a range of them (`isolate.py` halves ranges to find a row that the database refuses). The order
of the rows is not the lock order: the statements that store them sort them (see `flush.py`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import date, datetime
from itertools import chain, islice

from anyio.lowlevel import checkpoint

from ..bounds import BIGINT_MAX, BIGINT_MIN
from ..counters import CountKey, Pending
from ..kinds import SeenKind
from ..periods import utc
from ..sanitise import MAX_NAME, clean_name

__all__ = ["SLICE", "CountRecord", "KeyRecord", "Numbered", "count_records", "key_records"]

logger = logging.getLogger(__name__)

SLICE = 500  # rows made between two turns of the event loop (1,000 held the loop twice as long)

# (day, kind, values, salt or None) -> the bytes stored for each value, in order
EncodeAll = Callable[[date, SeenKind, Sequence[str], "bytes | None"], list[bytes]]

CountRecord = tuple[int, datetime, str, str, int]  # (n, start, category, event, value)
KeyRecord = tuple[int, date, str, bytes]  # (n, day, category, key)


class Numbered:
    """How many rows a generator has made so far (the last row's number)."""

    def __init__(self) -> None:
        self.rows = 0


class _Pace:
    """Gives the event loop a turn once `SLICE` rows were handled since the last one (a small flush,
    handled in one go, never waits for a turn)."""

    def __init__(self) -> None:
        self.since = 0

    async def handled(self, rows: int) -> None:
        self.since += rows
        if self.since >= SLICE:
            self.since = 0
            await checkpoint()


def _clean(name: str) -> str:
    # The common name needs no cleaning; checking that is much cheaper than cleaning it.
    if type(name) is str and len(name) <= MAX_NAME and name.isascii() and "\x00" not in name:
        return name
    return clean_name(name)


class _Renamed:
    """The rows of one period whose names cleaning changes: their keys, and their counts summed by
    their cleaned names (a row whose cleaned name is another row's is added to that row)."""

    def __init__(self) -> None:
        self.dirty: set[CountKey] = set()
        self.sums: dict[CountKey, int] = {}

    def __bool__(self) -> bool:
        return bool(self.dirty)


async def _renamed(counts: dict[CountKey, int], pace: _Pace) -> _Renamed:
    found = _Renamed()
    clean: dict[str, bool] = {}  # category -> whether it needs no cleaning
    items = iter(counts.items())
    while part := list(islice(items, SLICE)):
        for (category, event), value in part:
            ok = clean.get(category)
            if ok is None:
                ok = clean[category] = _clean(category) is category
            if not ok or _clean(event) is not event:
                found.dirty.add((category, event))
                key = (_clean(category), _clean(event))
                found.sums[key] = found.sums.get(key, 0) + value
        await pace.handled(len(part))
    return found


async def count_records(pending: Pending, numbered: Numbered) -> AsyncIterator[CountRecord]:
    """The count rows of `pending`, one per (period start, category, event) after cleaning the names
    (names that clean alike are summed), each sum saturated at the bounds of bigint.

    Names almost always need no cleaning: those rows go out as they are, without building a second
    dict of every row (which would cost time, and make the garbage collector hold the loop)."""
    saturated = 0
    pace = _Pace()
    for start, counts in list(pending.counts.items()):
        at = utc(start)
        renamed = await _renamed(counts, pace)
        rows: Iterator[tuple[CountKey, int]] = iter(counts.items())  # a taken batch does not change
        if renamed:
            rows = chain(
                ((k, v + renamed.sums.pop(k, 0)) for k, v in rows if k not in renamed.dirty),
                renamed.sums.items(),  # what is left of it once the loop above has run
            )
        while part := list(islice(rows, SLICE)):
            for (category, event), value in part:
                if not value:
                    continue
                if not BIGINT_MIN <= value <= BIGINT_MAX:
                    value = BIGINT_MAX if value > 0 else BIGINT_MIN
                    saturated += 1
                numbered.rows += 1
                yield numbered.rows, at, category, event, value
            await pace.handled(len(part))
    if saturated:
        logger.warning(
            "usage_stats: %d count(s) summed beyond the 64-bit range in memory; stored at the range's bound",
            saturated,
        )


async def key_records(
    pending: Pending, days: Sequence[date], encode: EncodeAll, salts: dict[date, bytes] | None, numbered: Numbered
) -> AsyncIterator[KeyRecord]:
    """The distinct keys of `days` in `pending`, encoded (hashed with the day's salt in the `hashed`
    scheme) `SLICE` at a time. Keys whose categories clean alike may repeat: they are stored once."""
    n = numbered.rows
    pace = _Pace()
    for day in days:
        salt = None if salts is None else salts[day]
        for (kind, category), values in list(pending.seen[day].items()):
            name = _clean(category)
            items = iter(values)
            while part := list(islice(items, SLICE)):
                for key in encode(day, kind, part, salt):
                    n += 1
                    numbered.rows = n
                    yield n, day, name, key
                await pace.handled(len(part))
