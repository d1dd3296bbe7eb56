"""Stored sums that saturate at the bounds of bigint instead of failing (see `usage_stats.bounds`).

A sum that overflowed would make its flush, its day's roll-up or its table read fail each time it
is tried: one absurd count would block everything after it. In SQL written with `saturating()`,
`{lo}` and `{hi}` stand for the bounds, as in `least(greatest(a::numeric + b, {lo}), {hi})`.
"""

from __future__ import annotations

from ..bounds import BIGINT_MAX, BIGINT_MIN

__all__ = ["saturating"]


def saturating(sql: str) -> str:
    """`sql` with `{lo}` and `{hi}` replaced by the bounds of bigint (other placeholders are kept)."""
    return sql.replace("{lo}", str(BIGINT_MIN)).replace("{hi}", str(BIGINT_MAX))
