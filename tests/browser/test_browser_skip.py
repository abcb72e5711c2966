"""Without its tools the browser test skips with a reason (or fails, when scripts/browser-test requires them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import test_form_browser


def test_missing_chromium_skips_with_the_install_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine without /usr/bin/chromium skips the browser test and says how to get it."""
    monkeypatch.setattr(test_form_browser, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("AMP_PROFILE_BROWSER_TEST", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        test_form_browser._require_tools()


def test_missing_tool_fails_when_required(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Under scripts/browser-test (which installs the tools) a missing tool fails instead of skipping."""
    monkeypatch.setattr(test_form_browser, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("AMP_PROFILE_BROWSER_TEST", "required")
    with pytest.raises(pytest.fail.Exception, match="not found"):
        test_form_browser._require_tools()
