"""A minimal Litestar app with usage statistics (`pip install 'usage-stats[litestar]'`).

Run it with `uvicorn --factory example_app.litestar_app:create_app`.
"""

from __future__ import annotations

from litestar import Litestar, Router, get
from litestar.params import FromPath

from usage_stats import UsageConfig, UsageMiddleware, UsageStats


@get("/{item_id:int}")
async def item(item_id: FromPath[int]) -> dict[str, int]:
    return {"id": item_id}


@get("/health")
async def health() -> str:
    return "ok"


def create_app(config: UsageConfig | None = None) -> UsageMiddleware:
    """The app, wrapped: `/api/items/{item_id}` is counted, `/health` is not. The configuration comes
    from the environment (USAGE_STATS_*) by default."""
    stats = UsageStats(config or UsageConfig.from_env())
    app = Litestar([Router("/api/items", route_handlers=[item]), health], lifespan=[stats.lifespan])
    return UsageMiddleware(app, stats=stats, exclude=("/health",))


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app())
