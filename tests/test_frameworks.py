"""Framework support stays optional, and every framework's route syntax becomes one template syntax."""

from __future__ import annotations

import subprocess
import sys

import pytest

from usage_stats.frameworks import brace_template


def test_importing_usage_stats_imports_no_framework() -> None:
    code = (
        "import sys, usage_stats, usage_stats.middleware, usage_stats.frameworks\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('litestar', 'django', 'quart', 'flask')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("route", "template"),
    [
        ("api/items/<int:pk>/", "/api/items/{pk}/"),
        ("api/<slug>/", "/api/{slug}/"),
        ("/items/<int:id>", "/items/{id}"),
        ("/files/<path:name>", "/files/{name}"),
        ("/api/items/{id:int}", "/api/items/{id}"),
        ("/api/items/{id}", "/api/items/{id}"),
        ("^legacy/(?P<year>[0-9]{4})/$", "/legacy/{year}/"),
        ("^shop/^(?P<a>(x|y)+)/(?P<b>[^/)]+)\\.html$", "/shop/{a}/{b}.html"),
        ("^old/([0-9]+)/(?:x|y)/$", "/old/{}/{}/"),
        ("^notes\\Z", "/notes"),
        ("about(us)/<int:pk>", "/about(us)/{pk}"),
        ("", "/"),
    ],
)
def test_templates_use_braces_and_begin_with_a_slash(route: str, template: str) -> None:
    assert brace_template(route) == template
