"""The public names: `__all__` sorted, complete against the design (§3), and every name importable."""

from __future__ import annotations

import usage_stats

# DESIGN.md §3: the public API and the names "also exported from usage_stats".
DESIGNED = {
    "UsageConfig",
    "UsageMiddleware",
    "UsageStats",
    "UsageReader",
    "UsageTable",
    "Period",
    "Row",
    "Mark",
    "UsageStatsError",
    "ConfigError",
    "StoreUnavailableError",
}


def test_all_is_sorted() -> None:
    assert list(usage_stats.__all__) == sorted(usage_stats.__all__)


def test_all_is_complete() -> None:
    assert set(usage_stats.__all__) >= DESIGNED


def test_every_exported_name_exists_and_is_public() -> None:
    for name in usage_stats.__all__:
        assert not name.startswith("_")
        assert getattr(usage_stats, name) is not None


def test_no_public_class_left_out() -> None:
    public = {
        name
        for name, value in vars(usage_stats).items()
        if not name.startswith("_") and isinstance(value, type) and value.__module__.startswith("usage_stats")
    }
    assert public <= set(usage_stats.__all__)


def test_exceptions_form_one_tree() -> None:
    assert issubclass(usage_stats.ConfigError, usage_stats.UsageStatsError)
    assert issubclass(usage_stats.ConfigError, ValueError)
    assert issubclass(usage_stats.StoreUnavailableError, usage_stats.UsageStatsError)


def test_bearer_token_is_exported() -> None:
    assert usage_stats.bearer_token is usage_stats.identity.bearer_token
