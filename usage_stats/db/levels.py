"""The level of detail of a stored row (the `level` column of `counts` and `distinct_counts`)."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Level"]


class Level(IntEnum):
    """How much a stored row covers; day-end maintenance moves rows to the next level as they age."""

    BASE = 1  # counts of one base period (shorter than a day)
    DAY = 2  # counts, or distinct keys, of one day
    MONTH = 3  # counts, or the sum of daily distinct counts, of one month
    MONTH_TOTAL = 4  # counts of one month with a category's events merged (event `<all>`)
