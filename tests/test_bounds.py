"""Counts within bigint and distinct keys of bounded length (pure), and `add()` refusing bad counts."""

from __future__ import annotations

import enum
from datetime import date

import pytest

from tests.conftest import StatsFactory
from usage_stats.anonymise import KeyEncoder
from usage_stats.bounds import (
    BIGINT_MAX,
    BIGINT_MIN,
    LONG_KEY_MARK,
    MAX_KEY_BYTES,
    bounded_key,
    check_count,
    saturate,
)


class Level(enum.IntEnum):
    HIGH = 3


class Index:
    """An integer type that is not `int` (like numpy's)."""

    def __index__(self) -> int:
        return 5


def test_counts_in_range_are_kept() -> None:
    for n in (0, 1, -1, BIGINT_MAX, BIGINT_MIN):
        assert check_count(n) == n
    assert check_count(Level.HIGH) == 3
    assert type(check_count(Level.HIGH)) is int
    assert check_count(Index()) == 5


@pytest.mark.parametrize("n", [BIGINT_MAX + 1, 2**63, BIGINT_MIN - 1, 10**30])
def test_counts_outside_64_bits_are_refused(n: int) -> None:
    with pytest.raises(ValueError, match="64-bit"):
        check_count(n)


@pytest.mark.parametrize("n", [1.0, 2.5, float("nan"), "3", None, b"1", [1], True, False])
def test_non_integers_and_bools_are_refused(n: object) -> None:
    with pytest.raises(TypeError, match="integer"):
        check_count(n)


def test_saturate_clamps_to_bigint() -> None:
    assert saturate(BIGINT_MAX + 1) == BIGINT_MAX
    assert saturate(4 * 2**62) == BIGINT_MAX
    assert saturate(BIGINT_MIN - 5) == BIGINT_MIN
    assert saturate(42) == 42


def test_long_keys_become_digests_short_ones_stay() -> None:
    short = "x" * MAX_KEY_BYTES
    assert bounded_key(short.encode()) == short.encode()
    long_a, long_b = "a" * 3000, "a" * 2999 + "b"
    da, db = bounded_key(long_a.encode()), bounded_key(long_b.encode())
    assert da != db  # distinctness is exact
    assert da == bounded_key(long_a.encode())  # and the same everywhere (no process secret)
    assert len(da) == 33
    assert da.startswith(LONG_KEY_MARK)
    # UTF-8 never starts with 0xff: a digest cannot be mistaken for a short key stored as it is
    assert bounded_key(("é" * (MAX_KEY_BYTES // 2 + 1)).encode())[:1] == LONG_KEY_MARK


@pytest.mark.parametrize("scheme", ["hashed", "memory", "database"])
def test_every_scheme_stores_keys_of_bounded_length(scheme: str) -> None:
    encode = KeyEncoder(scheme)
    day, salt = date(2026, 3, 10), b"s" * 32
    for value in ("u1", "🎉" * 3000, "x" * 100_000, "10.1.2.0"):
        for kind in ("u", "v"):
            assert len(encode(day, kind, value, salt)) <= MAX_KEY_BYTES + 1


def test_database_scheme_keeps_lone_surrogates_apart() -> None:
    encode = KeyEncoder("database")
    day = date(2026, 3, 10)
    a = b"caf\xe9".decode("utf-8", "surrogateescape")
    b = b"caf\xe8".decode("utf-8", "surrogateescape")
    assert encode(day, "u", a, None) != encode(day, "u", b, None)


async def test_add_refuses_bad_counts_at_the_call(make_stats: StatsFactory) -> None:
    stats = make_stats()
    with pytest.raises(ValueError, match="64-bit"):
        stats.add("bytes", "io", 2**63)
    with pytest.raises(ValueError, match="64-bit"):
        stats.add("bytes", "io", -(2**63) - 1)
    for bad in (1.5, 2.0, "3", None, True):
        with pytest.raises(TypeError):
            stats.add("bytes", "io", bad)  # type: ignore[arg-type]
    assert not stats.pending  # nothing refused was recorded
    stats.add("bytes", "io", BIGINT_MAX)
    stats.add("bytes", "io", Level.HIGH)
    assert stats.pending.total_counts == BIGINT_MAX + 3
