"""Benchmark 1b reads valgrind's summary: every total it reports, or a clear error."""

from __future__ import annotations

import pytest

from benchmarks.instructions import SIMULATED, summary

# The summary cachegrind printed for a run of benchmark 1b (`--cache-sim=yes --branch-sim=yes`).
_STDERR = """\
==7376== I   refs:      1,411,077,630
==7376== I1  misses:       17,592,081
==7376== LLi misses:           21,972
==7376== I1  miss rate:          1.25%
==7376==
==7376== D   refs:        645,166,798  (430,827,044 rd   + 214,339,754 wr)
==7376== D1  misses:       15,312,522  ( 13,222,440 rd   +   2,090,082 wr)
==7376== LLd misses:          390,090  (     77,119 rd   +     312,971 wr)
==7376==
==7376== LL refs:          32,904,603  ( 30,814,521 rd   +   2,090,082 wr)
==7376== LL misses:           412,062  (     99,091 rd   +     312,971 wr)
==7376==
==7376== Branches:        227,465,116  (193,524,373 cond +  33,940,743 ind)
==7376== Mispredicts:      24,843,431  ( 13,200,970 cond +  11,642,461 ind)
==7376== Mispred rate:           10.9% (        6.8%     +        34.3%   )
"""


def test_the_summary_gives_the_instructions_and_each_simulated_total() -> None:
    assert summary(_STDERR) == {
        "instructions": 1_411_077_630,
        "I1 misses": 17_592_081,
        "D1 misses": 15_312_522,
        "mispredicts": 24_843_431,
    }
    assert set(SIMULATED) < set(summary(_STDERR))


def test_a_run_without_the_simulation_is_an_error_that_names_what_is_missing() -> None:
    without = "\n".join(line for line in _STDERR.splitlines() if "Mispred" not in line)
    with pytest.raises(RuntimeError, match="no mispredicts"):
        summary(without)


def test_a_run_without_the_simulation_gives_its_instructions_when_only_they_are_asked_for() -> None:
    without = "\n".join(line for line in _STDERR.splitlines() if "misses" not in line and "Mispred" not in line)
    assert summary(without, ("instructions",)) == {"instructions": 1_411_077_630}
