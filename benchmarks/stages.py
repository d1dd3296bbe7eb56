"""Where the middleware's time goes: staged cuts of `UsageMiddleware.__call__`, timed side by side.

Each stage is a copy of today's `__call__` (its source, edited at one anchor) that stops at one step:
before any lookup, after the event is found, without counting users, without appending anything.
The stages, the real middleware, the no-op middleware and the bare app of benchmark 1 serve the same
traffic in interleaved, shuffled rounds; each figure is the median over rounds of the time added to
the bare app of the same round (each usage_stats batch ends by reading `stats.pending`, as in
benchmark 1). An anchor that no longer matches the source stops the run, so a stage never measures
code other than today's.

    .venv/bin/python -m benchmarks.stages              # Starlette and FastAPI, 40 rounds (about 4 minutes)
    .venv/bin/python -m benchmarks.stages --rounds 10
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import statistics
import textwrap
from typing import Any

from usage_stats import UsageMiddleware
from usage_stats import middleware as middleware_module

from .apps import NoopMiddleware, fastapi_app, make_stats, starlette_app
from .inprocess import _measure, _overheads

# stage -> (anchor in `__call__`'s source, what replaces it): the step the stage leaves out
_CUTS: dict[str, tuple[str, str]] = {
    "no lookup (returns once the app has answered)": (
        '        try:\n            endpoint = scope.get("endpoint")',
        '        return\n        try:\n            endpoint = scope.get("endpoint")',
    ),
    "no recording (returns once the event is found)": (
        '            user = scope.get("user")\n            if user is None:',
        '            return\n            user = scope.get("user")\n            if user is None:',
    ),
    "users not counted": (
        "            else:\n"
        "                # `_user`, inlined for a Starlette user class seen before (`_user_types`)\n",
        "            else:\n                return\n",
    ),
    "nothing appended (nor folded)": ("                    values.append(value)\n", "                    pass\n"),
}


def _stage(name: str, anchor: str, replacement: str) -> type[UsageMiddleware]:
    """A subclass of `UsageMiddleware` whose `__call__` is today's with `anchor` replaced."""
    source = textwrap.dedent(inspect.getsource(UsageMiddleware.__call__))
    indented = textwrap.indent(source, "    ")
    if indented.count(anchor) != 1:
        raise RuntimeError(f"stage {name!r}: its anchor is not once in UsageMiddleware.__call__ (see _CUTS)")
    namespace: dict[str, Any] = dict(vars(middleware_module))
    code = "from __future__ import annotations\nclass Stage(UsageMiddleware):\n" + indented.replace(anchor, replacement)
    exec(compile(code, f"<stage {name}>", "exec"), namespace)  # our own source, edited at one anchor
    stage: type[UsageMiddleware] = namespace["Stage"]
    return stage


def _build(kind: str, variant: str, classes: dict[str, type[UsageMiddleware]]) -> tuple[Any, Any]:
    app = starlette_app() if kind == "starlette" else fastapi_app()
    if variant == "none":
        return app, None
    if variant == "noop":
        app.add_middleware(NoopMiddleware)
        return app, None
    stats = make_stats()
    app.add_middleware(classes[variant], stats=stats)
    return app, stats


def _stage_overheads(kind: str, rounds: int, classes: dict[str, type[UsageMiddleware]]) -> dict[str, float]:
    """Median seconds added to a request by each variant (benchmark 1's rounds); "none": the bare app's own."""
    names = ("none", "noop", *classes)
    times = asyncio.run(_measure(kind, rounds, 2_000, names, lambda k, v: _build(k, v, classes)))
    over = _overheads(times)
    over["none"] = statistics.median(times["none"])
    return over


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stages", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args(argv)
    classes: dict[str, type[UsageMiddleware]] = {"usage_stats": UsageMiddleware}
    classes.update({name: _stage(name, *cut) for name, cut in _CUTS.items()})
    print("| app | variant | µs added to a request | a multiple of the no-op's |")
    print("|---|---|---|---|")
    for kind in ("starlette", "fastapi"):
        over = _stage_overheads(kind, args.rounds, classes)
        print(f"| {kind} | no middleware | {over['none'] * 1e6:.2f} µs a request | |")
        for name in ("noop", *classes):
            print(f"| {kind} | {name} | +{over[name] * 1e6:.2f} | {over[name] / over['noop']:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
