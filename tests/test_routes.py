"""Route templates read from the scope after the app ran: Starlette and FastAPI, mounts included."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message

from tests.apps import http_scope, shop_app
from usage_stats.routes import RouteTemplates


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


async def run(app: ASGIApp, path: str, method: str = "GET", root_path: str = "") -> tuple[str | None, int]:
    """Call `app` for `path` and return the template found and the status."""
    scope = http_scope(path, method, root_path)
    status = 0
    received = False

    async def receive() -> Message:
        nonlocal received
        if received:  # the client stays connected; responses listening for a disconnect are cancelled
            await anyio.sleep_forever()
        received = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return RouteTemplates()(scope, root_path), status


def starlette_app(tmp_path: Path) -> Starlette:
    (tmp_path / "app.css").write_text("body{}")
    inner = Router(routes=[Route("/items/{item_id:int}", ok), Route("/", ok)])
    org = Router(routes=[Route("/repos/{repo}", ok)])
    sub = Starlette(routes=[Route("/ping", ok), Mount("/deep", routes=[Route("/{x}/leaf", ok)])])
    return Starlette(
        routes=[
            Route("/", ok),
            Route("/users/{user_id}", ok),
            Route("/files/{rest:path}", ok),
            Route("/only-post", ok, methods=["POST"]),
            Mount("/api/v1", app=inner),
            Mount("/orgs/{org}", app=org),
            Mount("/sub", app=sub),
            Mount("/static", app=StaticFiles(directory=tmp_path)),
        ]
    )


@pytest.mark.parametrize(
    ("path", "template", "status"),
    [
        ("/", "/", 200),
        ("/users/alice", "/users/{user_id}", 200),
        ("/files/a/b/c.txt", "/files/{rest}", 200),
        ("/api/v1/items/42", "/api/v1/items/{item_id}", 200),
        ("/api/v1/", "/api/v1/", 200),
        ("/orgs/acme/repos/widgets", "/orgs/{org}/repos/{repo}", 200),
        ("/orgs/other-org/repos/x", "/orgs/{org}/repos/{repo}", 200),
        ("/sub/ping", "/sub/ping", 200),
        ("/sub/deep/abc/leaf", "/sub/deep/{x}/leaf", 200),
        ("/static/app.css", "/static/{path}", 200),
        ("/static/missing.css", "/static/{path}", 404),
        ("/only-post", "/only-post", 405),
        ("/nowhere", None, 404),
        ("/api/v1/items/not-an-int", None, 404),  # inside a mount, but no route matched there
        ("/orgs/acme/nothing", None, 404),
        ("/sub/nothing", None, 404),
    ],
)
async def test_starlette_templates(tmp_path: Path, path: str, template: str | None, status: int) -> None:
    assert await run(starlette_app(tmp_path), path) == (template, status)


async def test_raw_values_never_become_the_template(tmp_path: Path) -> None:
    found, _ = await run(starlette_app(tmp_path), "/orgs/secret-customer/repos/secret-repo")
    assert found is not None
    assert "secret" not in found


@pytest.mark.parametrize(
    ("path", "template", "status"),
    [
        ("/items/3", "/items/{item_id}", 200),
        ("/items/abc", "/items/{item_id}", 422),  # matched a route, the value was invalid
        ("/api/v1/users/bob", "/api/v1/users/{user_id}", 200),
        ("/api/v1/users/bob/sync", "/api/v1/users/{user_id}/sync", 200),
        ("/legacy/things/x", "/legacy/things/{thing}", 200),
        ("/legacy/nothing", None, 404),
        ("/nothing", None, 404),
    ],
)
async def test_fastapi_templates(path: str, template: str | None, status: int) -> None:
    assert await run(shop_app(), path) == (template, status)


async def test_an_outer_root_path_is_not_part_of_the_template() -> None:
    # Behind a proxy that strips /prefix (uvicorn --root-path /prefix), the paths arrive with it.
    app = Starlette(routes=[Route("/users/{user_id}", ok), Mount("/api", routes=[Route("/x/{y}", ok)])])
    assert await run(app, "/prefix/users/7", root_path="/prefix") == ("/users/{user_id}", 200)
    assert await run(app, "/prefix/api/x/1", root_path="/prefix") == ("/api/x/{y}", 200)


async def test_a_bare_router_with_a_parameterised_mount() -> None:
    # No Starlette app around it, so no scope["app"]: the mount template must still be found.
    router = Router(routes=[Mount("/orgs/{org}", routes=[Route("/repos/{repo}", ok)])])
    scope_app = await run(router, "/orgs/secret-org/repos/r1")
    assert scope_app == ("/orgs/{org}/repos/{repo}", 200)


async def test_fastapi_behind_a_root_path() -> None:
    app = shop_app()
    assert await run(app, "/prefix/items/3", root_path="/prefix") == ("/items/{item_id}", 200)
    assert await run(app, "/prefix/api/v1/users/u", root_path="/prefix") == ("/api/v1/users/{user_id}", 200)
    assert await run(app, "/prefix/legacy/things/t", root_path="/prefix") == ("/legacy/things/{thing}", 200)
