"""The benchmarked apps: a Starlette and a FastAPI hello-world with 20 routes with path parameters,
each wrapped in one of the compared middlewares (or none)."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.authentication import SimpleUser
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from usage_stats import UsageConfig, UsageMiddleware, UsageStats

from . import baseline

ROUTES = 20
ADDRESSES = 1_000
USERS = 100
SIGNED_IN_SHARE = 0.2  # one request in five comes from a signed-in user

PEERS = ("starlette_exporter", "prometheus_instrumentator", "opentelemetry")
VARIANTS = ("none", "noop", "usage_stats", *PEERS)
OURS = ("usage_stats", "usage_stats_before")  # the recorder's `pending` is read at the end of each timed batch
LABELS = {
    "none": "no middleware",
    "noop": "no-op ASGI middleware (wraps send)",
    "usage_stats": "usage_stats",
    "usage_stats_before": f"usage_stats before ({baseline.BASELINE[:7]})",
    "starlette_exporter": "starlette-exporter",
    "prometheus_instrumentator": "prometheus-fastapi-instrumentator",
    "opentelemetry": "OpenTelemetry ASGI",
}


def variants() -> tuple[str, ...]:
    """The compared variants: the package before the current work only when git can give it."""
    before = ("usage_stats_before",) if baseline.load() is not None else ()
    return ("none", "noop", "usage_stats", *before, *PEERS)


class NoopMiddleware:
    """The floor for any middleware that sees the status: wraps `send` and does nothing else."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, send_wrapper)


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("Hello, world!")


def starlette_app() -> Starlette:
    """Hello world on 20 routes such as `/r7/items/{item_id}`."""
    routes = [Route(f"/r{i}/items/{{item_id}}", _hello) for i in range(ROUTES)]
    return Starlette(routes=routes)


def fastapi_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    def make(i: int) -> Callable[..., Any]:
        async def hello(item_id: str) -> PlainTextResponse:
            return PlainTextResponse("Hello, world!")

        hello.__name__ = f"hello_{i}"
        return hello

    for i in range(ROUTES):
        app.add_api_route(f"/r{i}/items/{{item_id}}", make(i), methods=["GET"])
    return app


def make_stats(**overrides: Any) -> UsageStats:
    """An unstarted recorder: the hot path never touches the database."""
    return UsageStats(UsageConfig(dsn="postgresql://127.0.0.1:9/unused", schema="bench", **overrides))


def make_stats_before(**overrides: Any) -> Any:
    """`make_stats` of the package before the current work (`benchmarks.baseline`)."""
    before = baseline.load()
    if before is None:
        raise RuntimeError("the baseline package is not available (no git history)")
    return before.UsageStats(before.UsageConfig(dsn="postgresql://127.0.0.1:9/unused", schema="bench", **overrides))


_OTEL_PROVIDERS: tuple[Any, Any] | None = None


def _otel_providers() -> tuple[Any, Any]:
    global _OTEL_PROVIDERS
    if _OTEL_PROVIDERS is None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider

        # A real SDK (spans sampled and ended, metrics aggregated) with no exporter: no I/O.
        _OTEL_PROVIDERS = (TracerProvider(), MeterProvider())
    return _OTEL_PROVIDERS


def build(kind: str, variant: str, **stats_overrides: Any) -> tuple[Any, Any]:
    """The app of `kind` ("starlette" or "fastapi") with the `variant` middleware; returns the outer
    ASGI callable (middleware stack built) and the `UsageStats` of the usage_stats variants."""
    app = starlette_app() if kind == "starlette" else fastapi_app()
    stats = None
    if variant == "noop":
        app.add_middleware(NoopMiddleware)
    elif variant == "usage_stats":
        stats = make_stats(**stats_overrides)
        app.add_middleware(UsageMiddleware, stats=stats)
    elif variant == "usage_stats_before":
        stats = make_stats_before(**stats_overrides)
        app.add_middleware(baseline.load().UsageMiddleware, stats=stats)  # type: ignore[union-attr]
    elif variant == "starlette_exporter":
        from starlette_exporter import PrometheusMiddleware

        app.add_middleware(PrometheusMiddleware, app_name=f"bench_{kind}")
    elif variant == "prometheus_instrumentator":
        from prometheus_client import CollectorRegistry
        from prometheus_fastapi_instrumentator import Instrumentator

        Instrumentator(registry=CollectorRegistry()).instrument(app)
    elif variant == "opentelemetry":
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        tracer_provider, meter_provider = _otel_providers()
        app.add_middleware(OpenTelemetryMiddleware, tracer_provider=tracer_provider, meter_provider=meter_provider)
    elif variant != "none":
        raise ValueError(f"unknown variant {variant!r}")
    return app, stats


def traffic(count: int, seed: int = 1) -> list[dict[str, Any]]:
    """`count` request scopes: 20 routes, 1,000 client addresses, 100 signed-in users."""
    rng = random.Random(seed)
    addresses = [f"198.{rng.randrange(18, 20)}.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(ADDRESSES)]
    users = [SimpleUser(f"user{n}") for n in range(USERS)]
    scopes = []
    for _ in range(count):
        path = f"/r{rng.randrange(ROUTES)}/items/{rng.randrange(100_000)}"
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench/1.0"), (b"accept", b"*/*")],
            "client": (rng.choice(addresses), rng.randrange(1024, 65535)),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        if rng.random() < SIGNED_IN_SHARE:
            scope["user"] = rng.choice(users)
        scopes.append(scope)
    return scopes


def http_app() -> Any:
    """For uvicorn: `BENCH_KIND` and `BENCH_VARIANT` choose the app; client addresses come from
    `X-Forwarded-For`, trusted from loopback (so 1,000 visitors arrive over one socket)."""
    kind = os.environ.get("BENCH_KIND", "starlette")
    variant = os.environ.get("BENCH_VARIANT", "none")
    app, _ = build(kind, variant, trusted_proxies=("127.0.0.1/32",))
    return app
