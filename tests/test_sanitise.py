"""Names from requests and callers made storable (pure)."""

from __future__ import annotations

from usage_stats.sanitise import MAX_NAME, clean_name


def test_names_are_kept_verbatim_when_harmless() -> None:
    name = 'x\'; DROP TABLE counts; -- $1 "q" ünïcode 🎉'
    assert clean_name(name) == name


def test_nul_is_removed_and_length_capped() -> None:
    assert clean_name("a\x00b") == "ab"
    assert clean_name("y" * 10_000) == "y" * MAX_NAME


def test_unpaired_surrogates_are_replaced() -> None:
    raw = b"/caf\xe9".decode("utf-8", "surrogateescape")  # non-UTF-8 bytes from a path
    cleaned = clean_name(raw)
    cleaned.encode("utf-8")  # storable
    assert cleaned.startswith("/caf")


def test_non_strings_become_text() -> None:
    assert clean_name(42) == "42"


def test_a_name_whose_str_raises_becomes_other() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert clean_name(Unprintable()) == "<other>"
