"""The browser test's rule: skipped with its reason without Chromium, a failure when CI requires it."""

from __future__ import annotations

from pathlib import Path

import pytest

from .chromium import REQUIRE_BROWSER, chromium_or_skip


def test_chromium_found_is_used(tmp_path: Path) -> None:
    binary = tmp_path / "chromium"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert chromium_or_skip({}, binary) == str(binary)
    assert chromium_or_skip({REQUIRE_BROWSER: "1"}, binary) == str(binary)


@pytest.mark.parametrize("environ", [{}, {REQUIRE_BROWSER: ""}, {REQUIRE_BROWSER: "0"}])
def test_no_chromium_skips_with_the_reason(tmp_path: Path, environ: dict[str, str]) -> None:
    missing = tmp_path / "chromium"
    with pytest.raises(pytest.skip.Exception) as info:
        chromium_or_skip(environ, missing)
    assert str(missing) in str(info.value)
    assert "apt-get install -y chromium" in str(info.value)


def test_no_chromium_fails_when_required(tmp_path: Path) -> None:
    not_executable = tmp_path / "chromium"
    not_executable.write_text("")
    with pytest.raises(pytest.fail.Exception) as info:
        chromium_or_skip({REQUIRE_BROWSER: "1"}, not_executable)
    assert REQUIRE_BROWSER in str(info.value)
