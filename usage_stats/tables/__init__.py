"""The read path, in the order data flows: stored rows (`read`, through `db.store`) are built into a
`UsageTable` (`build`, `model`), which is written out as text, CSV or JSON (`formats`; the dashboard
renders HTML)."""

from __future__ import annotations

from .model import Mark, Period, Row, UsageTable
from .read import UsageReader

__all__ = ["Mark", "Period", "Row", "UsageReader", "UsageTable"]
