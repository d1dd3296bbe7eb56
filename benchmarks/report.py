"""Collecting figures into Markdown: one table per benchmark, and the machine they ran on."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field
from importlib import metadata


@dataclass
class Section:
    """One benchmark's rows: what was measured, the figure, the ratio, the target and whether it is met."""

    title: str
    note: str = ""
    rows: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    goals: list[tuple[str, str, str, str, str]] = field(default_factory=list)

    def row(self, what: str, figure: str, ratio: str, target: str = "", met: bool | None = None) -> None:
        mark = "" if met is None else ("yes" if met else "**no**")
        self.rows.append((what, figure, ratio, target, mark))

    def goal(self, what: str, target: str, before: str, after: str, met: bool | None) -> None:
        """A row of the summary at the top of RESULTS.md: a target with the figure measured on the
        package before the current work (`benchmarks.baseline`) and today's, side by side in one run."""
        mark = "" if met is None else ("yes" if met else "**no**")
        self.goals.append((what, target, before or "—", after, mark))

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        if self.note:
            lines += [self.note, ""]
        lines += ["| measured | figure | ratio | target | met |", "|---|---|---|---|---|"]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines) + "\n"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _command(args: list[str]) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not found"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def machine() -> str:
    """The machine, Python, PostgreSQL server and package versions, as Markdown."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    packages = [
        "usage-stats",
        "starlette",
        "fastapi",
        "uvicorn",
        "asyncpg",
        "starlette-exporter",
        "prometheus-fastapi-instrumentator",
        "prometheus-client",
        "opentelemetry-instrumentation-asgi",
        "opentelemetry-sdk",
    ]
    lines = [
        f"- machine: {platform.system()} {platform.release()}, {os.cpu_count()} cores, {cpu}",
        f"- Python {platform.python_version()} ({platform.python_implementation()})",
        "- packages: " + ", ".join(f"{p} {_version(p)}" for p in packages),
        f"- wrk: {_command(['wrk', '--version'])}",
    ]
    return "\n".join(lines)


def summary(sections: list[Section]) -> str:
    """The goals of every section in one table: target, before and after."""
    goals = [g for s in sections for g in s.goals]
    if not goals:
        return ""
    lines = [
        "## Targets: before and after",
        "",
        "Before is the package at the baseline commit (`benchmarks/baseline.py`), measured in the same run.",
        "",
        "| measured | target | before | after | met |",
        "|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(g) + " |" for g in goals]
    return "\n".join(lines) + "\n"
