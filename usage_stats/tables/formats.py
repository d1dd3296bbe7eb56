"""A `UsageTable` as text for a terminal, CSV or JSON (pure; the dashboard renders HTML)."""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import UsageTable

__all__ = ["render_text", "to_csv", "to_json"]

_COLUMNS = ("start", "category", "event", "kind", "value")

_HEADERS = ("PERIOD", "CATEGORY", "EVENT", "VALUE", "KIND")
_FORMATS = {"day": "%Y-%m-%d", "month": "%Y-%m", "base": "%Y-%m-%d %H:%M"}


def printable(text: str) -> str:
    """`text` with control characters escaped, so a stored name cannot drive the terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def width(text: str) -> int:
    """Columns that `text` takes in a terminal (wide East Asian characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _value(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.2f}"


def _start(period: str, start: datetime) -> str:
    return start.strftime(_FORMATS.get(period, "%Y-%m-%d %H:%M"))


def render_text(table: UsageTable) -> str:
    """One line per row, newest period first, columns aligned; values right-aligned."""
    lines = [
        (_start(table.period, p.start), printable(r.category), printable(r.event), _value(r.value), r.kind)
        for p in table.periods
        for r in p.rows
    ]
    if not lines:
        return f"no figures in the {table.period} table for this selection\n"
    widths = [max(width(cells[i]) for cells in [_HEADERS, *lines]) for i in range(len(_HEADERS))]
    out = []
    for cells in [_HEADERS, *lines]:
        padded = [
            " " * (widths[i] - width(cell)) + cell if i == 3 else cell + " " * (widths[i] - width(cell))
            for i, cell in enumerate(cells)
        ]
        out.append("  ".join(padded).rstrip())
    return "\n".join(out) + "\n"


def to_json(table: UsageTable) -> str:
    """The table as JSON: {"period": ..., "rows": [...table.as_dicts()...]}."""
    return json.dumps({"period": table.period, "rows": table.as_dicts()}, ensure_ascii=False)


def to_csv(table: UsageTable) -> str:
    """The table as CSV with a header row; cells that a spreadsheet would run as formulas are quoted."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_COLUMNS)
    for item in table.as_dicts():
        writer.writerow([_safe_cell(item[k]) for k in _COLUMNS])
    return out.getvalue()


def _safe_cell(value: object) -> object:
    # Spreadsheets run cells that begin with these characters as formulas (CSV injection).
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
