"""The public names: `__all__` sorted, complete against the design (§3), and every name importable."""

from __future__ import annotations

import ast
import pathlib
import typing

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


# Issue 11: the types of the callables users pass in, exported to type against.
HOOKS = {"BeforeFlush", "Categoriser", "Clock", "DashboardAuth", "EventNamer", "UserIdentifier"}


def test_hook_types_are_exported() -> None:
    assert set(usage_stats.__all__) >= HOOKS


def test_hook_types_are_what_the_api_takes() -> None:
    from starlette import types

    names = {**vars(usage_stats), "ASGIApp": types.ASGIApp}
    stats = typing.get_type_hints(usage_stats.UsageStats.__init__, localns=names)
    assert stats["clock"] == usage_stats.Clock | None
    assert stats["before_flush"] == usage_stats.BeforeFlush | None
    middleware = typing.get_type_hints(usage_stats.UsageMiddleware.__init__, localns=names)
    assert middleware["event_name"] == usage_stats.EventNamer | None
    assert middleware["category"] == usage_stats.Categoriser | None
    assert middleware["user_id"] == usage_stats.UserIdentifier | None
    dashboard = typing.get_type_hints(usage_stats.UsageStats.dashboard, localns=names)
    assert dashboard["auth"] == usage_stats.DashboardAuth | None


# Attributes with a leading underscore that are public API elsewhere (named tuples).
_NAMEDTUPLE_API = {"_make", "_replace", "_asdict", "_fields"}


def test_no_module_uses_another_modules_underscore_names() -> None:
    # `x._name` where x is not self/cls: another object's private attribute (issue 11).
    root = pathlib.Path(usage_stats.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and node.attr not in _NAMEDTUPLE_API
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                found.append(f"{path.relative_to(root)}:{node.lineno} .{node.attr}")
    assert found == []
