"""The package as it was before the current work (`BASELINE`), importable beside today's as
`usage_stats_before`, so a benchmark measures before and after side by side in one run.

The package's own imports are all relative, so a copy of its folder under another name is a
complete second package. The copy is taken from git (`git archive`) into `benchmarks/.before/`
once and reused; without git history (an sdist, a shallow clone) `load()` returns None and the
benchmarks show no "before" figure.
"""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

__all__ = ["BASELINE", "NAME", "load"]

# main before issue 12 (speed to the floor): the "before" of benchmarks/RESULTS.md.
BASELINE = "b79a9b3303d8f637b7278fb52073789333a29066"
NAME = "usage_stats_before"

_ROOT = Path(__file__).resolve().parent.parent
_CACHE = Path(__file__).resolve().parent / ".before" / BASELINE[:12]


def _extract() -> bool:
    target = _CACHE / NAME
    if (target / "__init__.py").exists():
        return True
    try:
        archive = subprocess.run(
            ["git", "-C", str(_ROOT), "archive", "--format=tar", BASELINE, "usage_stats"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    staging = _CACHE / "staging"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(staging, filter="data")
    (staging / "usage_stats").rename(target)
    staging.rmdir()
    return True


def load() -> ModuleType | None:
    """`usage_stats_before`, the package at `BASELINE`, or None when git cannot give it."""
    if NAME in sys.modules:
        return sys.modules[NAME]
    if not _extract():
        return None
    if str(_CACHE) not in sys.path:
        sys.path.append(str(_CACHE))
    return importlib.import_module(NAME)
