"""A minimal one-file Django app with usage statistics (`pip install 'usage-stats[django]'`).

Run it with `uvicorn --factory example_app.django_app:create_app`. A project puts the same three lines
in its `settings.py` (`MIDDLEWARE`) and `asgi.py` (`application = ...`).
"""

from __future__ import annotations

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path

from usage_stats import UsageConfig, UsageMiddleware, UsageStats
from usage_stats.django import Lifespan

if not settings.configured:
    settings.configure(
        SECRET_KEY="example-only",
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "testserver"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[
            "django.middleware.common.CommonMiddleware",
            # after Django's AuthenticationMiddleware in a project with users
            "usage_stats.django.RouteMiddleware",
        ],
    )
    django.setup()


async def item(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse({"id": pk})


async def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [path("api/", include([path("items/<int:pk>/", item)])), path("health/", health)]


def create_app(config: UsageConfig | None = None) -> Lifespan:
    """The ASGI application: `/api/items/{pk}/` is counted, `/health/` is not. The configuration comes
    from the environment (USAGE_STATS_*) by default."""
    from django.core.asgi import get_asgi_application

    stats = UsageStats(config or UsageConfig.from_env())
    app = UsageMiddleware(get_asgi_application(), stats=stats, exclude=("/health/",))
    return Lifespan(app, stats=stats)  # starts and stops the statistics with the server
