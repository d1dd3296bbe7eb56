"""The dashboard's HTML: one server-rendered page per view, every name escaped (pure)."""

from __future__ import annotations

from datetime import datetime
from html import escape
from importlib import resources
from urllib.parse import urlencode

from ..tables.model import Group, Period
from .charts import render_chart
from .model import View, chart_series

__all__ = ["error_page", "format_value", "render_page"]

_CSS = (resources.files(__package__) / "style.css").read_text(encoding="utf-8")
_TITLES = {"day": "Daily usage", "month": "Monthly usage"}
_KIND_TAGS = {"total": "all events", "distinct": "distinct", "average": "avg per day"}


def format_value(value: float) -> str:
    """A figure as shown: whole numbers with thousands separators, averages with one decimal."""
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.1f}"


def _tick(value: float) -> str:
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _query(view: View) -> str:
    params: list[tuple[str, str]] = [("category", c) for c in view.selected]
    if view.minimum:
        params.append(("minimum", _tick(view.minimum).replace(",", "")))
    text = urlencode(params)
    return f"?{text}" if text else ""


def _axis_label(period: str, start: datetime) -> str:
    return start.strftime("%d %b") if period == "day" else start.strftime("%b %Y")


def _heading(period: str, start: datetime) -> str:
    return start.strftime("%a %d %b %Y") if period == "day" else start.strftime("%B %Y")


def render_page(view: View, base: str) -> str:
    """The whole page for `view`; `base` is the path the dashboard is mounted at."""
    title = _TITLES[view.period]
    body = [
        _header(view, base),
        '<main class="wrap">',
        _toolbar(view, base),
        _summary(view),
    ]
    if not view.table.periods:
        body.append(
            '<section class="empty card"><h2>No figures yet</h2><p>Counts reach the database at the app\'s next '
            f"flush (every {int(view.flush_interval.total_seconds())} s), and at shutdown.</p></section>"
        )
    else:
        body += [_charts(view), _marks(view), _periods(view)]
    body.append("</main>")
    body.append('<footer class="wrap">usage_stats · aggregated counts only, no personal data</footer>')
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{escape(title)} · usage_stats</title><style>{_CSS}</style></head>"
        f'<body data-view="{view.period}">{"".join(body)}</body></html>'
    )


def _header(view: View, base: str) -> str:
    query = _query(view)
    tabs = "".join(
        f'<a class="tab{" current" if view.period == p else ""}" href="{escape(f"{base}/{p}{query}")}"'
        f"{' aria-current=page' if view.period == p else ''}>{label}</a>"
        for p, label in (("day", "Daily"), ("month", "Monthly"))
    )
    return (
        '<header class="top"><div class="wrap bar">'
        f'<div class="title"><span class="brand">usage_stats</span><h1>{_TITLES[view.period]}</h1></div>'
        f'<nav class="tabs">{tabs}</nav></div></header>'
    )


def _toolbar(view: View, base: str) -> str:
    options = ['<option value="">All categories</option>']
    for category in view.categories:
        chosen = " selected" if category in view.selected[:1] else ""
        options.append(f'<option value="{escape(category)}"{chosen}>{escape(category)}</option>')
    minimum = _tick(view.minimum).replace(",", "") if view.minimum else ""
    query = _query(view)
    reset = f'<a class="reset" href="{escape(f"{base}/{view.period}")}">Reset</a>' if query else ""
    return (
        '<section class="toolbar">'
        f'<form class="filters" method="get" action="{escape(f"{base}/{view.period}")}">'
        f'<label>Category <select name="category">{"".join(options)}</select></label>'
        f'<label>Minimum value <input type="number" name="minimum" min="0" step="any" value="{minimum}" '
        'placeholder="0"></label><button type="submit">Apply</button>'
        f"{reset}</form>"
        '<div class="downloads"><span>Download this table</span>'
        f'<a class="button" download href="{escape(f"{base}/{view.period}.csv{query}")}">CSV</a>'
        f'<a class="button" download href="{escape(f"{base}/{view.period}.json{query}")}">JSON</a></div>'
        "</section>"
    )


def _summary(view: View) -> str:
    n = len(view.table.periods)
    unit = ("day" if view.period == "day" else "month") + ("" if n == 1 else "s")
    filters = []
    if view.selected:
        filters.append("category " + ", ".join(escape(c) for c in view.selected))
    if view.minimum:
        filters.append(f"values of at least {escape(_tick(view.minimum))}")
    shown = f" · showing {' and '.join(filters)}" if filters else ""
    return (
        f'<p class="meta">{n} {unit} · times in {escape(view.zone)} · '
        f"as of {view.now.strftime('%Y-%m-%d %H:%M')}{shown}</p>"
    )


def _charts(view: View) -> str:
    numbered = [(i, m.name, m.at) for i, m in enumerate(view.marks, 1)]
    figures = []
    for series in chart_series(view.table):
        total = sum(v for start, v in series.values.items() if view.bounds and start >= view.bounds[0])
        if series.key.startswith("seen:"):
            shown = [v for start, v in series.values.items() if view.bounds and start >= view.bounds[0]]
            caption = f"mean {sum(shown) / len(shown):,.1f}" if shown else ""
        else:
            caption = f"total {format_value(total)}"
        svg = render_chart(
            series,
            view.bounds,
            numbered,
            label=lambda start: _axis_label(view.period, start),
            number=_tick,
        )
        name, _, what = series.title.partition(": ")
        figures.append(
            f'<figure class="card chart-card" data-series="{escape(series.key)}"><figcaption>'
            f"<strong>{escape(name)}</strong> <span>{escape(what)}</span>"
            f'<span class="total">{caption}</span></figcaption>{svg}</figure>'
        )
    return f'<section class="charts"><h2>Over time</h2><div class="grid charts-grid">{"".join(figures)}</div></section>'


def _marks(view: View) -> str:
    if not view.marks:
        return ""
    items = "".join(
        f'<li data-mark="{escape(m.name)}"><span class="num">{i}</span><strong>{escape(m.name)}</strong>'
        f'<span class="tag">{escape(m.category)}</span><time datetime="{m.at.isoformat()}">'
        f"{m.at.strftime('%Y-%m-%d %H:%M')}</time></li>"
        for i, m in enumerate(view.marks, 1)
    )
    return f'<section class="marks"><h2>Marks</h2><ol class="card">{items}</ol></section>'


def _periods(view: View) -> str:
    cards = "".join(_period(view, p) for p in view.table.periods)
    label = "Days" if view.period == "day" else "Months"
    return (
        f'<section class="periods"><h2>{label}, newest first</h2><div class="grid periods-grid">{cards}</div></section>'
    )


def _period(view: View, period: Period) -> str:
    badge = ""
    if period.start == view.current:
        badge = (
            '<span class="badge">today so far</span>' if view.period == "day" else '<span class="badge">so far</span>'
        )
    rows = "".join(_rows(group) for group in period.groups)
    return (
        f'<article class="card period" data-start="{period.start.isoformat()}">'
        f"<h3>{escape(_heading(view.period, period.start))}{badge}</h3>"
        '<table><thead><tr><th scope="col">Category</th><th scope="col">Event</th>'
        f'<th scope="col" class="num">Value</th></tr></thead><tbody>{rows}</tbody></table></article>'
    )


def _rows(group: Group) -> str:
    """The table rows of one category: the category's name shown on its first row only."""
    category = escape(group.category)
    out = []
    first = True
    for event, value, kind in zip(group.events, group.values, group.kinds, strict=True):
        tag = _KIND_TAGS.get(kind)
        tag_html = f' <span class="tag">{tag}</span>' if tag else ""
        name = escape(event)
        out.append(
            f'<tr{_GROUP if first else ""} data-category="{category}" data-event="{name}" data-kind="{kind}" '
            f'data-value="{value!r}"><td class="cat">{category if first else ""}</td>'
            f'<td class="event">{name}{tag_html}</td>'
            f'<td class="num">{format_value(value)}</td></tr>'
        )
        first = False
    return "".join(out)


_GROUP = ' class="group"'


def error_page(status: int, title: str, message: str) -> str:
    """A small page for errors the operator should read (a bad filter, the database unavailable)."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)} · usage_stats</title><style>{_CSS}</style></head>"
        f'<body><main class="wrap"><section class="empty card"><h2>{status} · {escape(title)}</h2>'
        f"<p>{escape(message)}</p></section></main></body></html>"
    )
