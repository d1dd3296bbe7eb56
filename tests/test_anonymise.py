"""Addresses cut to a network prefix, keyed hashes and the `memory` scheme's stand-ins (pure)."""

from __future__ import annotations

from datetime import date

import pytest

from usage_stats.anonymise import AddressCutter, MemoryPseudonyms, cut_address, keyed_hash


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("192.0.2.77", "192.0.2.0"),
        ("192.0.2.0", "192.0.2.0"),
        ("192.0.2.255", "192.0.2.0"),
        ("10.1.2.3", "10.1.2.0"),
        ("::ffff:192.0.2.77", "192.0.2.0"),  # IPv4-mapped IPv6 is IPv4
        ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::"),
        ("2001:db8::1", "2001:db8::"),
        ("::1", "::"),
        ("2001:0:0:1::5", "2001::"),
        ("2001:DB8:ABCD:12::1", "2001:db8:abcd::"),
    ],
)
def test_default_prefixes_cut_to_24_and_48_bits(address: str, expected: str) -> None:
    assert cut_address(address) == expected


# The examples of the Go package's FormatIPSeen (go-usage-behaviour.md §1.6), with the host:port
# split done by the caller here (`scope["client"]` gives the host alone).
@pytest.mark.parametrize(
    ("go_input", "host", "expected"),
    [
        ("192.0.2.77:5555", "192.0.2.77", "192.0.2.0"),
        ("[::ffff:192.0.2.77]:80", "::ffff:192.0.2.77", "192.0.2.0"),
        ("[2001:db8:85a3:8d3:1319:8a2e:370:7348]:443", "2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::"),
        ("[2001:db8::1]:443", "2001:db8::1", "2001:db8::"),
        ("[::1]:80", "::1", "::"),
        ("[2001:0:0:1::5]:1", "2001:0:0:1::5", "2001::"),
        ("[192.0.2.77]:80", "192.0.2.77", "192.0.2.0"),
        ("bogus:80", "bogus", None),
    ],
)
def test_go_package_examples(go_input: str, host: str, expected: str | None) -> None:
    assert cut_address(host) == expected


@pytest.mark.parametrize(
    ("address", "v4", "v6", "expected"),
    [
        ("192.0.2.77", 16, 48, "192.0.0.0"),
        ("192.0.2.77", 32, 48, "192.0.2.77"),
        ("192.0.2.77", 0, 48, "0.0.0.0"),
        ("192.0.2.77", 28, 48, "192.0.2.64"),
        ("2001:db8:85a3:8d3::1", 24, 64, "2001:db8:85a3:8d3::"),
        ("2001:db8:85a3:8d3::1", 24, 32, "2001:db8::"),
        ("::ffff:192.0.2.77", 16, 128, "192.0.0.0"),  # mapped: the IPv4 prefix applies
    ],
)
def test_custom_prefixes(address: str, v4: int, v6: int, expected: str) -> None:
    assert cut_address(address, v4, v6) == expected


@pytest.mark.parametrize(
    "garbage",
    ["", "bogus", "192.0.2", "192.0.2.256", "fe80::1%eth0", "2001:db8::1::2", "192.0.2.77:80", " ", "\x00", "é" * 10],
)
def test_garbage_gives_none(garbage: str) -> None:
    assert cut_address(garbage) is None
    assert AddressCutter(24, 48)(garbage) is None


def test_cutter_caches_and_accepts_any_input() -> None:
    cut = AddressCutter(24, 48)
    assert cut("192.0.2.1") == cut("192.0.2.1") == "192.0.2.0"
    assert cut("x" * 1000) is None  # too long to be an address: not parsed at all
    assert cut(None) is None  # type: ignore[arg-type]
    assert cut(12345) is None  # type: ignore[arg-type]


def test_keyed_hash_depends_on_salt_kind_and_value() -> None:
    a, b = b"a" * 32, b"b" * 32
    h = keyed_hash(a, "u", "alice")
    assert len(h) == 16
    assert h == keyed_hash(a, "u", "alice")
    assert h != keyed_hash(b, "u", "alice")
    assert h != keyed_hash(a, "v", "alice")
    assert h != keyed_hash(a, "u", "alice2")
    assert b"alice" not in h
    keyed_hash(a, "u", "\ud800")  # an unpaired surrogate is hashed, not an error


def test_memory_pseudonyms_stable_for_a_day_and_forgotten_the_next() -> None:
    p = MemoryPseudonyms()
    d1, d2 = date(2026, 3, 10), date(2026, 3, 11)
    alice = p.user(d1, "alice")
    assert p.user(d1, "alice") == alice
    assert p.user(d1, "bob") != alice
    assert b"alice" not in alice
    v = p.visitor(d1, "192.0.2.0")
    assert p.visitor(d1, "192.0.2.0") == v
    assert p.user(d2, "alice") != alice  # a new day: nothing links the two
    assert p.visitor(d2, "192.0.2.0") != v
    # a late key for yesterday does not reset today's stand-ins
    today_alice = p.user(d2, "alice")
    p.user(d1, "carol")
    assert p.user(d2, "alice") == today_alice


def test_two_memory_instances_disagree() -> None:
    day = date(2026, 3, 10)
    assert MemoryPseudonyms().user(day, "alice") != MemoryPseudonyms().user(day, "alice")
