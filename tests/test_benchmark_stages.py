"""`benchmarks/stages.py` cuts today's `UsageMiddleware.__call__` at one step per stage: each stage must
still match today's source, and stop where its name says."""

from __future__ import annotations

from starlette.authentication import SimpleUser

from benchmarks import stages
from benchmarks.apps import make_stats, starlette_app
from benchmarks.inprocess import _receive, _send
from tests.apps import http_scope
from usage_stats import UsageMiddleware


async def _serve(middleware: type[UsageMiddleware]) -> tuple[int, int]:
    """Counts and distinct keys pending after a visitor's and a signed-in user's requests, each sent
    three times (the first of each takes the general path, the next ones the fast path)."""
    stats = make_stats()  # not started: what is pending is what was recorded
    app = starlette_app()  # the benchmark's own app
    app.add_middleware(middleware, stats=stats)
    handler = app.build_middleware_stack()
    for n in range(3):
        await handler(http_scope(f"/r0/items/{n}"), _receive, _send)
        scope = http_scope(f"/r0/items/{n}")
        scope["user"] = SimpleUser(f"user{n}")
        await handler(scope, _receive, _send)
    pending = stats.pending
    return pending.total_counts, pending.total_keys


async def test_each_stage_stops_where_its_name_says() -> None:
    built = {name: stages._stage(name, *cut) for name, cut in stages._CUTS.items()}
    assert set(built) == {
        "no lookup (returns once the app has answered)",
        "no recording (returns once the event is found)",
        "users not counted",
        "nothing appended (nor folded)",
    }
    assert all(issubclass(stage, UsageMiddleware) for stage in built.values())
    # the real middleware: 6 requests, each an event and a status count; 1 visitor network, 3 users
    # (a visitor's first request finds no event yet, so the general path counts it and remembers it)
    assert await _serve(UsageMiddleware) == (12, 4)
    assert await _serve(built["no lookup (returns once the app has answered)"]) == (0, 0)
    assert await _serve(built["no recording (returns once the event is found)"]) == (2, 1)
    assert await _serve(built["users not counted"]) == (6, 1)  # the visitor's three requests
    # a visitor's first two requests take the general path (the second admits the slot), a user
    # class's first one too: the other appends, of visitors and users alike, are the ones cut
    assert await _serve(built["nothing appended (nor folded)"]) == (6, 2)
