"""Which Chromium the browser test drives, and what happens when there is none.

Debian's `chromium` package is used (never `playwright install`). On a machine without it the test
is skipped with the reason, so the README's test command passes on a fresh clone; with
`USAGE_STATS_REQUIRE_BROWSER=1` (set by `.ci/run`, which installs it) its absence is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

__all__ = ["CHROMIUM", "REQUIRE_BROWSER", "chromium_or_skip"]

CHROMIUM = Path("/usr/bin/chromium")
REQUIRE_BROWSER = "USAGE_STATS_REQUIRE_BROWSER"


def chromium_or_skip(
    environ: Mapping[str, str] = os.environ,
    path: Path = CHROMIUM,
    usable: Callable[[Path], bool] = lambda p: os.access(p, os.X_OK),
) -> str:
    """The Chromium binary; when missing, skips the test, or fails it when the environment requires it."""
    if usable(path):
        return str(path)
    reason = f"no Chromium at {path}: install Debian's (apt-get install -y chromium) to run the browser test"
    if environ.get(REQUIRE_BROWSER, "") not in ("", "0"):
        pytest.fail(f"{reason}; {REQUIRE_BROWSER} is set, so it must run")
    pytest.skip(reason)
