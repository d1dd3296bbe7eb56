"""A minimal Quart app with usage statistics (`pip install 'usage-stats[quart]'`).

Run it with `uvicorn --factory example_app.quart_app:create_app`.
"""

from __future__ import annotations

from quart import Blueprint, Quart, session

import usage_stats.quart
from usage_stats import UsageConfig, UsageMiddleware, UsageStats


def create_app(config: UsageConfig | None = None) -> Quart:
    """The app: `/api/items/{item_id}` is counted, `/health` is not; the signed-in user is the session's
    `user_id`. The configuration comes from the environment (USAGE_STATS_*) by default."""
    stats = UsageStats(config or UsageConfig.from_env())
    app = Quart(__name__)
    items = Blueprint("items", __name__, url_prefix="/api/items")

    @items.route("/<int:item_id>")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.route("/health")
    async def health() -> str:
        return "ok"

    app.register_blueprint(items)

    @app.before_serving
    async def start_stats() -> None:
        await stats.start()

    @app.after_serving
    async def stop_stats() -> None:
        await stats.stop()

    usage_stats.quart.install(app, user_id=lambda: session.get("user_id"))
    app.asgi_app = UsageMiddleware(app.asgi_app, stats=stats, exclude=("/health",))  # type: ignore[assignment]
    return app
