"""A flush's rows (no database): names cleaned, rows whose names clean alike summed, sums saturated,
keys encoded; numbered from 1, made a slice at a time."""

from __future__ import annotations

from datetime import UTC, date, datetime

import anyio
import pytest

from usage_stats.anonymise import KeyEncoder, keyed_hash
from usage_stats.bounds import BIGINT_MAX
from usage_stats.counters import Pending
from usage_stats.db.flush_rows import SLICE, Numbered, count_records, key_records
from usage_stats.kinds import USER, VISITOR

START = int(datetime(2026, 3, 2, 12, tzinfo=UTC).timestamp())
DAY = date(2026, 3, 2)


async def _counts(pending: Pending) -> tuple[list[tuple[int, str, str, int]], int]:
    numbered = Numbered()
    rows = [(n, category, event, value) async for n, _, category, event, value in count_records(pending, numbered)]
    return rows, numbered.rows


def test_rows_whose_names_clean_alike_are_summed(caplog: pytest.LogCaptureFixture) -> None:
    pending = Pending(
        {
            START: {
                ("page", "/a"): 1,
                ("page", "/a\x00"): 2,  # cleans to /a
                ("pa\x00ge", "/a"): 4,  # cleans to page, /a
                ("page", "x" * 300): 8,
                ("page", "x" * 250): 16,  # both cut to 200 characters
                ("page", "/zero"): 0,
                ("page", "/big"): BIGINT_MAX,
                ("pa\x00ge", "/big"): 5,  # summed beyond bigint: stored at its bound
            }
        }
    )
    rows, made = anyio.run(_counts, pending)
    assert sorted((c, e, v) for _, c, e, v in rows) == [
        ("page", "/a", 7),
        ("page", "/big", BIGINT_MAX),
        ("page", "x" * 200, 24),
    ]
    assert [n for n, *_ in rows] == [1, 2, 3] == list(range(1, made + 1))
    assert "1 count(s) summed beyond the 64-bit range" in caplog.text


def test_a_clean_batch_goes_out_as_it_is() -> None:
    counts = {("page", f"/e{i}"): i + 1 for i in range(2 * SLICE + 5)}
    rows, made = anyio.run(_counts, Pending({START: counts}))
    assert [(c, e, v) for _, c, e, v in rows] == [(c, e, v) for (c, e), v in counts.items()]
    assert made == len(counts)


def test_keys_are_encoded_with_the_days_salt() -> None:
    salt = b"s" * 32
    values = dict.fromkeys(f"10.0.{i}.0" for i in range(SLICE + 3))
    pending = Pending({}, {DAY: {(VISITOR, "visitor"): values, (USER, "us\x00er"): {"ann": None}}})

    async def keys() -> list[tuple[int, date, str, bytes]]:
        numbered = Numbered()
        return [r async for r in key_records(pending, [DAY], KeyEncoder("hashed").encode_all, {DAY: salt}, numbered)]

    rows = anyio.run(keys)
    assert {(d, c, k) for _, d, c, k in rows} == {(DAY, "visitor", keyed_hash(salt, VISITOR, v)) for v in values} | {
        (DAY, "user", keyed_hash(salt, USER, "ann"))
    }
    assert [n for n, *_ in rows] == list(range(1, len(values) + 2))


def test_key_encoder_encodes_many_as_it_encodes_one() -> None:
    values = ["198.51.100.0", "alice", "\ud800", "x" * 500]
    for scheme in ("hashed", "database"):
        encode = KeyEncoder(scheme)
        assert encode.encode_all(DAY, USER, values, b"k" * 32) == [encode(DAY, USER, v, b"k" * 32) for v in values]
    with pytest.raises(ValueError, match="salt"):
        KeyEncoder("hashed").encode_all(DAY, USER, values, None)
