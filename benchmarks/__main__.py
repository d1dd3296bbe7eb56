"""Run every benchmark side by side and write `benchmarks/RESULTS.md`.

    .venv/bin/python -m benchmarks            # the full run (under 15 minutes on 2 cores)
    .venv/bin/python -m benchmarks --quick    # a smoke run of a minute or so
    .venv/bin/python -m benchmarks --only inprocess,recording

Database benchmarks use `USAGE_STATS_TEST_DSN` (else `USAGE_STATS_DSN`, else the embedded server),
each in a schema of its own that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from . import database, fleet, flush, http, inprocess, instructions, memory, recording, tables
from .report import Section, machine, summary

_BENCHMARKS: dict[str, Callable[[bool], Section | list[Section]]] = {
    "inprocess": inprocess.run,
    "instructions": instructions.run,
    "http": http.run,
    "recording": recording.run,
    "flush": flush.run,
    "database": database.run,
    "tables": tables.run,
    "memory": memory.run,
    "fleet": fleet.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and smaller data: a smoke run")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(_BENCHMARKS)}")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()] or list(_BENCHMARKS)
    unknown = [n for n in chosen if n not in _BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    started = time.monotonic()
    sections: list[Section] = []
    for name in chosen:
        print(f"running {name}...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        result = _BENCHMARKS[name](args.quick)
        sections.extend(result if isinstance(result, list) else [result])
        print(f"  {name}: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    sections.sort(key=lambda s: s.title)
    elapsed = time.monotonic() - started
    header = [
        "# Benchmark results",
        "",
        f"`.venv/bin/python -m benchmarks{' --quick' if args.quick else ''}"
        f"{' --only ' + args.only if args.only else ''}`, run at "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {elapsed / 60:.1f} minutes.",
        "Ratios are the figures to read: the machine is shared and absolute times move with its load.",
        "",
        machine(),
        "",
    ]
    text = "\n".join(header) + "\n" + summary(sections) + "\n" + "\n".join(s.markdown() for s in sections)
    print(text)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
