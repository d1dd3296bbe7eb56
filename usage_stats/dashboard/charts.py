"""Server-rendered SVG bar charts: one series over a continuous time axis, with marks (pure).

Every text that reaches the SVG is HTML-escaped; the chart has no script and no external asset.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

__all__ = ["Series", "axis_ticks", "render_chart"]

# Drawn at about this size in the page, so text in the SVG has its CSS size on screen.
WIDTH, HEIGHT = 560, 200
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 8, 20, 24
_MAX_X_LABELS = 7
_MAX_STEPS = 5


@dataclass(frozen=True, slots=True)
class Series:
    """What one chart shows: a title, a unit for tooltips and a value per period start."""

    key: str
    title: str
    unit: str
    values: Mapping[datetime, float]


def axis_ticks(highest: float, *, whole: bool = False) -> list[float]:
    """Round values from 0 up to at least `highest`, in at most five equal steps of 1, 2 or 5 times a
    power of ten (steps of at least 1 for `whole` numbers)."""
    if highest <= 0:
        return [0.0, 1.0]
    power = 10.0 ** math.floor(math.log10(highest / _MAX_STEPS))
    for step in (power * m for m in (1, 2, 5, 10, 20)):
        if whole and step < 1:
            continue
        steps = math.ceil(highest / step - 1e-9)
        if steps <= _MAX_STEPS:
            return [step * i for i in range(steps + 1)]
    raise AssertionError("unreachable: a step of 20 powers always fits")  # pragma: no cover


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
    values = list(series.values.values())
    ticks = axis_ticks(max(values, default=0), whole=all(float(v).is_integer() for v in values))
    top = ticks[-1]
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(series.title)}" data-series="{escape(series.key)}" '
        f'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">'
    ]
    for tick in ticks:
        y = _TOP + plot_h - plot_h * tick / top
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="ytick" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(number(tick))}</text>'
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
