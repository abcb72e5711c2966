"""The form in a real browser: JupyterLab in Debian's headless Chromium, driven by Playwright.

Run it with ``scripts/browser-test`` (it installs what it needs); without Chromium, Playwright or JupyterLab the
test skips and says which one is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SCREENSHOT = ARTIFACTS / "form.png"
BATCH_SCREENSHOT = ARTIFACTS / "form-batch.png"

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]


def _require_tools() -> None:
    missing = None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} not found: apt-get install chromium (or run scripts/browser-test)"
    elif importlib.util.find_spec("playwright") is None:
        missing = "playwright not installed: pip install -e '.[browser]' (or run scripts/browser-test)"
    elif importlib.util.find_spec("jupyterlab") is None:
        missing = "jupyterlab not installed: pip install -e '.[browser]' (or run scripts/browser-test)"
    if missing is None:
        return
    if os.environ.get("AMP_PROFILE_BROWSER_TEST") == "required":
        pytest.fail(missing)  # scripts/browser-test installed them: a skip there would hide a broken install
    pytest.skip(missing)


def _notebook(path: Path) -> None:
    cells = [
        "%load_ext amp_profile_magic\n%ampprofile_emulator",
        # A second of latency, so the busy state can be seen before the table arrives.
        "from amp_profile_magic._magics import AmpProfileMagics\n"
        "from amp_profile_magic.emulator import Faults\n"
        "magics = next(c for c in get_ipython().configurables if isinstance(c, AmpProfileMagics))\n"
        "magics.start_emulator().faults = Faults(latency=1.0)",
        "%ampprofile_form",
    ]
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"cell-{i}",
                "metadata": {},
                "outputs": [],
                "source": source,
            }
            for i, source in enumerate(cells)
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(notebook, indent=1))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[str]:
    """JupyterLab on 127.0.0.1 with a token, isolated settings, and news and update checks off; stopped after."""
    _require_tools()
    import httpx

    root = tmp_path / "root"
    root.mkdir()
    _notebook(root / "form.ipynb")
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    # Otherwise JupyterLab asks which kernel to start, in a dialog, even for a notebook that names one.
    notebook_settings = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    notebook_settings.mkdir(parents=True)
    (notebook_settings / "tracker.jupyterlab-settings").write_text(json.dumps({"autoStartDefaultKernel": True}))
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
    }
    env.pop("AMPLITUDE_SECRET_KEY", None)
    port, token = _free_port(), secrets.token_hex(16)
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            "--LabApp.extension_manager=readonly", "--allow-root",
            "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited early:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/api/status", params={"token": token}, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("JupyterLab did not answer within 120 s")
            time.sleep(0.5)
        yield f"{base}/lab/tree/form.ipynb?token={token}"
    finally:
        server.terminate()  # Jupyter Server shuts its kernels (and so the kernel's emulator) down on SIGTERM
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


def _run_all_cells(page: Any) -> None:
    """Run > Run All Cells, once the kernel really runs them.

    A click that lands before the kernel's connection is up does nothing (the prompts stay ``[ ]``), and no
    indicator tells that moment apart reliably; so click, and click again only if nothing started.
    """
    first_prompt = page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt").first
    for attempt in range(10):
        page.locator(".jp-StatusBar-TextItem", has_text="Idle").first.wait_for()
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(mark in first_prompt.inner_text() for mark in "*0123456789"):
                print(f"cells started after {attempt + 1} Run All click(s)")
                return
            time.sleep(0.25)
    pytest.fail("JupyterLab never started running the cells")


def test_form_fetches_and_renders_the_table_in_jupyterlab(lab: str) -> None:
    """In JupyterLab the form renders, fills from typing, and Fetch shows user 12345's recommendation table;
    switched to pasted ids, it fetches a batch with a live Stop button and shows the summary and failures."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(120_000)
            page.goto(lab)
            page.locator(".jp-Notebook .jp-Cell").first.wait_for()
            _run_all_cells(page)

            form = page.locator(".amp-profile-form")
            form.wait_for()
            expect(page.locator(".amp-line")).to_contain_text("nothing to fetch")
            expect(page.locator("button.amp-fetch")).to_be_disabled()

            page.locator(".amp-identity-value input").fill("12345")
            page.locator(".amp-control-recs input").fill("testRecId")
            expect(page.locator(".amp-line code")).to_have_text("%ampprofile user=12345 recs=testRecId")
            button = page.locator("button.amp-fetch")
            expect(button).to_be_enabled()
            button.click()
            expect(button).to_be_disabled()
            expect(button).to_have_text("Fetching…")
            expect(page.locator(".amp-output")).to_contain_text("Fetching: %ampprofile user=12345 recs=testRecId")

            table = page.locator(".amp-output table", has_text="cookie")
            table.wait_for()
            expect(table).to_contain_text("testRecId")
            expect(button).to_be_enabled()
            expect(button).to_have_text("Fetch")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            form.scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOT), full_page=True)

            page.locator(".amp-identity-value input").fill("nobody-at-all")
            expect(page.locator(".amp-line code")).to_have_text("%ampprofile user=nobody-at-all recs=testRecId")
            button.click()
            expect(page.locator(".amp-output .amp-profile-error")).to_contain_text("Unknown user or device")
            expect(button).to_be_enabled()
            page.screenshot(path=str(ARTIFACTS / "form-error.png"), full_page=True)

            # A batch: switch who to pasted ids, paste three (one unknown), Fetch, wait for the summary line.
            stop = page.locator("button.amp-stop")
            expect(stop).to_be_hidden()
            page.locator(".amp-who-mode button", has_text="pasted ids").click()
            expect(page.locator(".amp-identity-value input")).to_be_hidden()
            expect(stop).to_be_disabled()
            page.locator(".amp-pasted-ids textarea").fill("12345\nuser-00001\nnobody-at-all")
            expect(page.locator(".amp-line code")).to_have_text(
                "%%ampprofile recs=testRecId\n12345\nuser-00001\nnobody-at-all"
            )
            expect(page.locator(".amp-line")).to_contain_text("(3 user ids)")
            button.click()
            expect(stop).to_be_enabled()  # a second of latency per request: the batch is still running
            expect(page.locator(".amp-output")).to_contain_text("Fetching: 3 users")
            summary = page.locator(".amp-output .amp-summary")
            # 12345 was fetched above, so the local store answers it (as it would for %%ampprofile).
            expect(summary).to_have_text(
                re.compile(r"2 profiles \(1 from the local store, .* old; 1 fetched\) · 1 failed: unknown_user ×1")
            )
            expect(page.locator(".amp-progress-label")).to_contain_text("3 of 3 · done in ")
            expect(page.locator(".amp-output .amp-failures")).to_have_text("failures (1)")
            expect(page.locator(".amp-output table", has_text="nobody-at-all")).to_contain_text("unknown_user")
            expect(page.locator(".amp-output table", has_text="cookie")).to_contain_text("12345")
            expect(stop).to_be_disabled()
            expect(button).to_be_enabled()
            form.scroll_into_view_if_needed()
            page.screenshot(path=str(BATCH_SCREENSHOT), full_page=True)
        except Exception:
            # What the page showed when it went wrong is the quickest clue.
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "form-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
    assert BATCH_SCREENSHOT.stat().st_size > 10_000
