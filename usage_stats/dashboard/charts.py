"""Server-rendered SVG bar charts: one series over a continuous time axis, with marks (pure).

Every text that reaches the SVG is HTML-escaped; the chart has no script and no external asset.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

__all__ = ["Series", "nice_ceiling", "render_chart"]

WIDTH, HEIGHT = 640, 210
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 10, 18, 26
_MAX_X_LABELS = 7
_GRID_LINES = 4


@dataclass(frozen=True, slots=True)
class Series:
    """What one chart shows: a title, a unit for tooltips and a value per period start."""

    key: str
    title: str
    unit: str
    values: Mapping[datetime, float]


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least `value` (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * power >= value:
            return step * power
    return 10.0 * power  # pragma: no cover - the loop always returns


def render_chart(
    series: Series,
    bounds: Sequence[datetime],
    marks: Sequence[tuple[int, str, datetime]],
    *,
    label: Callable[[datetime], str],
    number: Callable[[float], str],
) -> str:
    """An SVG bar chart of `series` over the slots [bounds[i], bounds[i+1]), oldest on the left.

    Periods without a value leave a gap; each bar is a `rect.bar` with a `<title>` tooltip. `marks`
    (number, name, at) inside the axis are drawn as dashed lines labelled with their number.
    """
    slots = len(bounds) - 1
    plot_w = WIDTH - _LEFT - _RIGHT
    plot_h = HEIGHT - _TOP - _BOTTOM
    step = plot_w / max(slots, 1)
    top = nice_ceiling(max(series.values.values(), default=0))
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(series.title)}" data-series="{escape(series.key)}" '
        f'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i in range(_GRID_LINES + 1):
        y = _TOP + plot_h - plot_h * i / _GRID_LINES
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="ytick" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(number(top * i / _GRID_LINES))}</text>"
        )
    bar_w = max(step * 0.72, 1.0)
    for i in range(slots):
        value = series.values.get(bounds[i])
        if value is None:
            continue
        h = plot_h * value / top
        x = _LEFT + i * step + (step - bar_w) / 2
        tip = f"{label(bounds[i])}: {number(value)} {series.unit}"
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{_TOP + plot_h - h:.1f}" width="{bar_w:.1f}" '
            f'height="{max(h, 0.0):.1f}" rx="1.5"><title>{escape(tip)}</title></rect>'
        )
    every = max(1, math.ceil(slots / _MAX_X_LABELS))
    for i in range(slots - 1, -1, -every):  # always label the newest period
        x = _LEFT + (i + 0.5) * step
        parts.append(
            f'<text class="xtick" x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle">{escape(label(bounds[i]))}</text>'
        )
    parts.append(f'<line class="axis" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{_TOP + plot_h}" y2="{_TOP + plot_h}"/>')
    for n, name, at in marks:
        mark_x = _mark_x(bounds, at, step)
        if mark_x is None:
            continue
        parts.append(
            f'<g class="mark"><title>{escape(f"{n}. {name}")}</title>'
            f'<line x1="{mark_x:.1f}" x2="{mark_x:.1f}" y1="{_TOP - 4}" y2="{_TOP + plot_h}"/>'
            f'<text x="{mark_x + 3:.1f}" y="{_TOP - 6}">{n}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _mark_x(bounds: Sequence[datetime], at: datetime, step: float) -> float | None:
    for i in range(len(bounds) - 1):
        lo, hi = bounds[i].timestamp(), bounds[i + 1].timestamp()
        if lo <= at.timestamp() < hi:  # elapsed time: a day may last 23 or 25 hours
            fraction = (at.timestamp() - lo) / (hi - lo)
            return _LEFT + (i + fraction) * step
    return None
