"""The package's layout: `db/` is the only database boundary, and the read path reads through it."""

from __future__ import annotations

import ast
from pathlib import Path

import usage_stats

PACKAGE = Path(usage_stats.__file__).parent
# Modules of `db/` that only `db/` itself may use: the driver-level ones behind `Store`.
DB_INTERNALS = {"usage_stats.db.query", "usage_stats.db.connect", "usage_stats.db.migrations"}


def imported_modules(path: Path) -> set[str]:
    """Every module that `path` imports, by absolute name (relative imports resolved)."""
    module = ".".join(("usage_stats", *path.relative_to(PACKAGE).with_suffix("").parts))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def outside_db() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "db" not in p.relative_to(PACKAGE).parts[:1]]


def test_only_db_talks_to_the_driver() -> None:
    offenders = {
        str(p.relative_to(PACKAGE)): sorted(m for m in imported_modules(p) if m.split(".")[0] == "asyncpg")
        for p in outside_db()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_db_uses_its_queries_connections_and_migrations() -> None:
    offenders = {str(p.relative_to(PACKAGE)): sorted(imported_modules(p) & DB_INTERNALS) for p in outside_db()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_read_path_is_one_package() -> None:
    names = {p.name for p in (PACKAGE / "tables").glob("*.py")}
    assert {"model.py", "build.py", "formats.py", "read.py"} <= names
    for old in ("reader.py", "report.py", "table.py", "textout.py"):
        assert not (PACKAGE / old).exists()
