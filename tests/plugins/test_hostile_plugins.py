"""A broken third-party plugin is skipped with one line naming it; the built-ins and the kernel carry on."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from amp_profile_magic import ProfileClient
from amp_profile_magic.sections import _registry, available_sections, register
from tests.conftest import CANARY_KEY

from . import hostile

#: Entry point name → (class path, what the skip line says).
BROKEN = {
    "noname": ("tests.plugins.hostile:NoName", "its name must be an identifier (a str), not None"),
    "raisingname": ("tests.plugins.hostile:RaisingName", "reading its declarations raised RuntimeError"),
    "unhashable": ("tests.plugins.hostile:Unhashable", "reading its declarations raised TypeError"),
    "steal": ("tests.plugins.hostile:StealsRecs", "its keyword 'recs' belongs to the recs section"),
    "shadow": ("tests.plugins.hostile:ShadowsProperties", "its attribute 'properties' belongs to the props section"),
    "dictrequest": ("tests.plugins.hostile:DictRequest", "its request_type must be a dataclass"),
    "nokeywords": ("tests.plugins.hostile:NoKeywords", "its keywords must be a non-empty tuple of str"),
    "strkw": ("tests.plugins.hostile:StringKeywords", "its keywords must be a non-empty tuple of str"),
    "props": ("tests.plugins.hostile:NamedProps", "the name 'props' is taken by PropsSection"),
    "exits": ("tests.plugins.exits:Anything", "loading it raised SystemExit (`import tests.plugins.exits`"),
    "missing": ("tests.plugins.hostile:DoesNotExist", "loading it raised AttributeError"),
}


@pytest.fixture
def broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every broken plugin above installed through entry points of one throwaway distribution."""
    info = tmp_path / "amp_broken_plugins-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: amp-broken-plugins\nVersion: 1.0\n")
    lines = [f"{name} = {target}" for name, (target, _) in BROKEN.items()]
    (info / "entry_points.txt").write_text("[amp_profile_magic.sections]\n" + "\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _registry.reset()
    yield
    _registry.reset()


def test_each_broken_plugin_is_skipped_with_one_line(broken: None, caplog: pytest.LogCaptureFixture) -> None:
    """Discovery skips every broken plugin with one error line naming it and what is wrong; the built-ins stay."""
    with caplog.at_level(logging.ERROR, logger="amp_profile_magic"):
        sections = available_sections()
    assert list(sections) == ["recs", "props", "cohorts", "comps", "propensity"]
    messages = [record.getMessage() for record in caplog.records]
    assert all(
        "\n" not in message and record.exc_info is None
        for message, record in zip(messages, caplog.records, strict=True)
    )
    for name, (target, problem) in BROKEN.items():
        lines = [message for message in messages if message.startswith(f"Skipped section plugin {name!r} ({target})")]
        assert len(lines) == 1, (name, messages)
        assert problem in lines[0], lines[0]


def test_the_builtins_work_with_broken_plugins_installed(broken: None, shell: Any, run: Any) -> None:
    """The magic and the Python API still answer with every broken plugin installed."""
    frame = shell.run_line_magic("ampprofile", "user=12345 recs=testRecId")
    assert len(frame) > 0
    client = next(item for item in shell.configurables if type(item).__name__ == "AmpProfileMagics").client
    assert isinstance(client, ProfileClient)
    assert client.lookup(user_id="12345", props=True).properties
    result = run("%ampprofile user=12345")
    assert "nothing to fetch" in result.everything
    assert "Traceback" not in result.everything


def test_register_refuses_a_broken_section_in_one_line() -> None:
    """Run-time registration refuses what discovery skips, naming the problem, and leaves the sections as they were."""
    before = list(available_sections())
    for section in (hostile.StealsRecs(), hostile.NoName(), hostile.Unhashable()):
        with pytest.raises(ValueError, match=f"cannot register {type(section).__name__}: ") as caught:
            register(section)
        assert "\n" not in str(caught.value)
        assert CANARY_KEY not in str(caught.value)
    assert list(available_sections()) == before


@pytest.mark.parametrize("hook", ["request", "params", "read", "frame"])
def test_a_plugin_hook_that_raises_is_one_line_naming_it(shell: Any, run: Any, hook: str) -> None:
    """A plugin hook raising fails the cell with one line naming the section, the class and the hook, without the
    plugin's message (which may quote a secret) or a traceback; the built-ins answer in the next cell."""
    section = hostile.Boom(hook)
    register(section)
    shell.user_ns["ids"] = ["12345", "user-00001"]
    try:
        single = run("%ampprofile user=12345 boom props")
        batch = run("%ampprofile --users ids boom")
    finally:
        _registry.unregister("boom")
    expected = f"The boom section ({hostile.__name__}.Boom) failed in {hook}(): RuntimeError."
    for result in (single, batch):
        assert result.result.error_in_exec is not None
        assert expected in result.everything, result.everything
        assert "Traceback" not in result.everything
        assert section.secret not in result.everything + str(result.result.error_in_exec)
    assert len(shell.run_line_magic("ampprofile", "user=12345 props")) == 1


def test_a_plugin_whose_controls_raise_leaves_the_form_working(shell: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The form opens with the built-ins' controls when a plugin's controls() raises; one error line names it."""
    pytest.importorskip("ipywidgets")
    register(hostile.Boom("controls"))
    try:
        with caplog.at_level(logging.ERROR, logger="amp_profile_magic"):
            form = shell.run_line_magic("ampprofile_form", "user=12345 props")
    finally:
        _registry.unregister("boom")
    assert "props" in form.fields
    assert [record.getMessage() for record in caplog.records] == [
        f"Left out the controls of the boom section ({hostile.__name__}.Boom): it raised RuntimeError."
    ]
