"""A flush's rows, made slice by slice so that the event loop is never held for long.

Names are cleaned and counts merged and saturated (`count_records`), distinct keys encoded with the
day's salt (`key_records`), at most `SLICE` rows at a time; between two slices the generators give
the event loop a turn, so the requests served beside a flush of any size wait at most for one slice
(about a millisecond). Rows come numbered from 1 in the order they are made: a statement can then
take a range of them (`isolate.py` halves ranges to find a row that the database refuses). The order
of the rows is not the lock order: the statements that store them sort them (see `flush.py`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import date, datetime
from itertools import islice

from anyio.lowlevel import checkpoint

from ..bounds import BIGINT_MAX, BIGINT_MIN
from ..counters import CountKey, Pending
from ..kinds import SeenKind
from ..periods import utc
from ..sanitise import MAX_NAME, clean_name

__all__ = ["SLICE", "CountRecord", "KeyRecord", "Numbered", "count_records", "key_records"]

logger = logging.getLogger(__name__)

SLICE = 2_000  # rows made between two turns of the event loop

# (day, kind, values, salt or None) -> the bytes stored for each value, in order
EncodeAll = Callable[[date, SeenKind, Sequence[str], "bytes | None"], list[bytes]]

CountRecord = tuple[int, datetime, str, str, int]  # (n, start, category, event, value)
KeyRecord = tuple[int, date, str, bytes]  # (n, day, category, key)


class Numbered:
    """How many rows a generator has made so far (the last row's number)."""

    def __init__(self) -> None:
        self.rows = 0


def _clean(name: str) -> str:
    # The common name needs no cleaning; checking that is much cheaper than cleaning it.
    if type(name) is str and len(name) <= MAX_NAME and name.isascii() and "\x00" not in name:
        return name
    return clean_name(name)


async def count_records(pending: Pending, numbered: Numbered) -> AsyncIterator[CountRecord]:
    """The count rows of `pending`, one per (period start, category, event) after cleaning the names
    (names that clean alike are summed), each sum saturated at the bounds of bigint."""
    merged: dict[tuple[int, str, str], int] = {}
    for start, counts in list(pending.counts.items()):
        items = iter(counts.items())  # not copied: nothing changes a taken batch while it is written
        while part := list(islice(items, SLICE)):
            _merge(merged, start, part)
            await checkpoint()
    rows = iter(merged.items())
    starts: dict[int, datetime] = {}
    saturated = 0
    n = numbered.rows
    while made := list(islice(rows, SLICE)):
        for (start, category, event), value in made:
            if not BIGINT_MIN <= value <= BIGINT_MAX:
                value = BIGINT_MAX if value > 0 else BIGINT_MIN
                saturated += 1
            at = starts.get(start)
            if at is None:
                at = starts[start] = utc(start)
            n += 1
            numbered.rows = n
            yield n, at, category, event, value
        await checkpoint()
    if saturated:
        logger.warning(
            "usage_stats: %d count(s) summed beyond the 64-bit range in memory; stored at the range's bound",
            saturated,
        )


def _merge(merged: dict[tuple[int, str, str], int], start: int, part: list[tuple[CountKey, int]]) -> None:
    names: dict[str, str] = {}
    for (category, event), value in part:
        if value:
            c = names.get(category)
            if c is None:
                c = names[category] = _clean(category)
            key = (start, c, _clean(event))
            merged[key] = merged.get(key, 0) + value


async def key_records(
    pending: Pending, days: Sequence[date], encode: EncodeAll, salts: dict[date, bytes] | None, numbered: Numbered
) -> AsyncIterator[KeyRecord]:
    """The distinct keys of `days` in `pending`, encoded (hashed with the day's salt in the `hashed`
    scheme) `SLICE` at a time. Keys whose categories clean alike may repeat: they are stored once."""
    n = numbered.rows
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
                await checkpoint()
