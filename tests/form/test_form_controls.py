"""The form's controls: generated from the section plugins, turned into the grammar's line, validated live."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets
import pandas as pd
import pytest
from IPython.core.error import UsageError

import amp_profile_magic
from amp_profile_magic._form import ProfileForm
from amp_profile_magic._grammar import GrammarError, parse_line
from amp_profile_magic.sections import Control, Section, available_sections, register
from amp_profile_magic.sections._base import identity_columns, split_ids

from .conftest import click_and_wait, fill, output_data

WIDGET_FOR_KIND = {"toggle": ipywidgets.Checkbox, "ids": ipywidgets.Text, "choice": ipywidgets.Dropdown}


def test_one_widget_per_plugin_control_in_section_order(form: Any) -> None:
    """Every control that a section plugin declares gets a widget of its kind, in the sections' order."""
    declared = [control for section in available_sections().values() for control in section.controls()]
    assert [control.keyword for control in declared] == list(form.fields)
    assert {"recs", "rec_type", "props", "cohorts", "comps", "propensity", "propensity_type"} <= set(form.fields)
    for control in declared:
        widget = form.fields[control.keyword].widget
        assert isinstance(widget, WIDGET_FOR_KIND[control.kind])
        assert widget.description == control.label
        assert f"amp-control-{control.keyword}" in widget._dom_classes


def test_empty_form_shows_the_grammar_error_and_disables_fetch(form: Any) -> None:
    """A blank form cannot be fetched and says what is missing, in the grammar's words."""
    assert form.line is None
    assert form.error == "nothing to fetch: add a section (recs, props, cohorts, comps, propensity)"
    assert form.fetch_button.disabled
    assert "amp-line-error" in form.line_view.value
    fill(form, recs="testRecId")
    assert form.error == "who to look up? add user=ID, device=ID, or --users VARIABLE"
    assert form.fetch_button.disabled


def test_line_follows_every_change(form: Any) -> None:
    """The equivalent %ampprofile line is rebuilt on each change and enables Fetch once valid."""
    fill(form, who="12345", recs="testRecId")
    assert form.line == "%ampprofile user=12345 recs=testRecId"
    assert not form.fetch_button.disabled
    assert "<code class='amp-line-ok'" in form.line_view.value
    assert "%ampprofile user=12345 recs=testRecId" in form.line_view.value

    fill(
        form,
        who="ffff-ffff-ffff-ffff",
        kind="device",
        recs="testRecId, testRecId2",
        rec_type="random",
        props=True,
        cohorts=True,
        comps="ALL",
        propensity="0x10x,0x11x",
        propensity_type="pct",
        out="profile",
    )
    assert form.line == (
        "%ampprofile device=ffff-ffff-ffff-ffff recs=testRecId,testRecId2 rec_type=random props cohorts comps "
        "propensity=0x10x,0x11x propensity_type=pct -o profile"
    )
    form.fields["comps"].widget.value = "c1, c2"
    assert "comps=c1,c2" in form.line
    form.fields["comps"].widget.value = ""
    assert "comps" not in form.line


@pytest.mark.parametrize(
    ("controls", "expected"),
    [
        ({"rec_type": "model"}, "rec_type needs recs=… too"),
        ({"recs": "a,,b"}, "recs=a,,b: empty id in the list"),
        ({"recs": "a", "out": "1abc"}, "-o '1abc': not a valid Python variable name"),
        ({"propensity_type": "pct"}, "propensity_type needs propensity=… too"),
    ],
)
def test_invalid_selection_shows_the_one_line_grammar_error(form: Any, controls: dict[str, str], expected: str) -> None:
    """An invalid selection shows exactly the error %ampprofile would raise for the same line, and no line."""
    out = controls.pop("out", "")
    fill(form, who="12345", out=out, **controls)
    assert form.line is None
    assert form.fetch_button.disabled
    assert form.error is not None
    assert expected in form.error
    with pytest.raises(GrammarError) as raised:
        parse_line(" ".join(form.tokens()))
    assert str(raised.value) == form.error
    assert "\n" not in form.error


def test_prefill_from_the_magic_line(shell: Any) -> None:
    """Arguments of %ampprofile_form fill the controls, and the form's line reproduces them canonically."""
    form = shell.run_line_magic(
        "ampprofile_form", "device=ffff-ffff-ffff-ffff recs=testRecId rec_type=model comps cohorts -o res"
    )
    assert form.identity_kind.value == "device"
    assert form.identity_value.value == "ffff-ffff-ffff-ffff"
    assert form.fields["recs"].widget.value == "testRecId"
    assert form.fields["rec_type"].widget.value == "model"
    assert form.fields["comps"].widget.value == "all"
    assert form.fields["cohorts"].widget.value is True
    assert form.out_name.value == "res"
    assert form.line == "%ampprofile device=ffff-ffff-ffff-ffff recs=testRecId rec_type=model cohorts comps -o res"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--users ids recs=a", "--users ids: no variable 'ids' holding ids"),
        ("--users 'ids[:2]' recs=a", "no variable 'ids\\[:2\\]' holding ids .* an expression needs %ampprofile"),
        ("--users a --devices b recs=a", "give --users or --devices, not both"),
        ("user=1 device=2 recs=a", "not both"),
        ("user=1 recz=a", "unknown keyword 'recz'; did you mean 'recs'?"),
        ("user=1 props --refresh", "--refresh has no form control; use %ampprofile for it"),
        ("user=1 props --store-only", "--store-only has no form control"),
        ("user=1 props --dry-run", "--dry-run has no form control"),
    ],
)
def test_prefill_refuses_what_the_form_cannot_show(shell: Any, line: str, message: str) -> None:
    """A line the form cannot represent is refused with a one-line UsageError, not half-applied."""
    with pytest.raises(UsageError, match=message.replace("?", r"\?")):
        shell.run_line_magic("ampprofile_form", line)


def test_form_line_survives_ipython_expansion(shell: Any, emulator: Any, form: Any) -> None:
    """Ids with spaces, quotes, braces or dollars reach the API unchanged when the form's line is run as a cell."""
    shell.user_ns["x"] = "EXPANDED"
    magics = next(item for item in shell.configurables if type(item).__name__ == "AmpProfileMagics")
    magics.raise_errors = False
    for user_id in ("a b", "a$x", "o'neil", "a{b", "a}b", "{x", "x{x}y", "50%", "{x}", "$x", "$$", 'say "hi"'):
        fill(form, who=user_id, cohorts=True)
        assert form.line is not None, form.error
        result = shell.run_cell(form.line)
        assert result.error_in_exec is None
        assert emulator.requests[-1].params["user_id"] == user_id


def test_display_is_the_widget(form: Any) -> None:
    """Displaying the form displays its root widget (a widget view in Jupyter)."""
    bundle = form._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == form.widget.model_id
    assert "amp-profile-form" in form.widget._dom_classes


def test_profile_form_function_shares_the_kernels_magics(shell: Any) -> None:
    """amp_profile_magic.profile_form() builds the same form on the kernel's own magics instance and client."""
    form = amp_profile_magic.profile_form("user=12345 props", shell=shell)
    magics = next(item for item in shell.configurables if type(item).__name__ == "AmpProfileMagics")
    assert isinstance(form, ProfileForm)
    assert form.magics is magics
    assert form.line == "%ampprofile user=12345 props"
    assert "profile_form" in amp_profile_magic.__all__


def test_profile_form_loads_the_extension_when_needed(shell: Any) -> None:
    """profile_form() in a kernel without %load_ext loads the extension, so %unload_ext still works after."""
    shell.run_line_magic("unload_ext", "amp_profile_magic")
    assert not any(type(item).__name__ == "AmpProfileMagics" for item in shell.configurables)
    form = amp_profile_magic.profile_form(shell=shell)
    assert form.magics in shell.configurables
    assert "amp_profile_magic" in shell.extension_manager.loaded
    assert "ampprofile_form" in shell.magics_manager.magics["line"]


def test_profile_form_outside_ipython_says_so() -> None:
    """Called from plain Python, profile_form() fails with a one-line reason instead of a traceback deep inside."""
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import amp_profile_magic\ntry:\n amp_profile_magic.profile_form()\nexcept RuntimeError as e:\n print(e)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert completed.stdout.strip() == "profile_form() needs IPython or a Jupyter kernel; run it in a notebook"


@dataclass(frozen=True)
class FlavorRequest:
    """Whether flavor is asked, its ids and its mode."""

    flavor: bool = False
    flavor_ids: tuple[str, ...] = ()
    flavor_mode: str | None = None


class FlavorSection(Section):
    """A third-party section that only adds query parameters: its controls cover all three kinds."""

    name = "flavor"
    keywords = ("flavor", "flavor_ids", "flavor_mode")
    usage = ("flavor  a test plugin",)
    request_type = FlavorRequest

    def request(self, tokens: Mapping[str, str | None]) -> FlavorRequest:
        ids = split_ids("flavor_ids", tokens["flavor_ids"]) if "flavor_ids" in tokens else ()
        return FlavorRequest(True, ids, tokens.get("flavor_mode"))

    def params(self, request: FlavorRequest) -> tuple[tuple[str, str], ...]:
        params = [("x_flavor", "true")]
        if request.flavor_ids:
            params.append(("x_flavor_ids", ",".join(request.flavor_ids)))
        if request.flavor_mode is not None:
            params.append(("x_flavor_mode", request.flavor_mode))
        return tuple(params)

    def read(self, data: Mapping[str, Any], request: FlavorRequest, reader: Any) -> dict[str, Any]:
        return {}

    def frame(self, profiles: Sequence[Any]) -> pd.DataFrame:
        return pd.DataFrame({**identity_columns(profiles), "flavored": [True] * len(profiles)})

    def controls(self) -> tuple[Control, ...]:
        return (
            Control(keyword="flavor", label="Flavor", kind="toggle", default=False),
            Control(keyword="flavor_ids", label="Flavor ids", kind="ids", placeholder="ids"),
            Control(keyword="flavor_mode", label="Mode", kind="choice", options=("plain", "spicy"), default="plain"),
        )


def test_registered_plugin_gets_controls_and_fetches(shell: Any, emulator: Any) -> None:
    """A section registered at run time appears in a new form with its controls, and Fetch sends its parameters."""
    register(FlavorSection())
    form = shell.run_line_magic("ampprofile_form", "")
    assert list(form.fields)[-3:] == ["flavor", "flavor_ids", "flavor_mode"]
    assert isinstance(form.fields["flavor"].widget, ipywidgets.Checkbox)
    assert isinstance(form.fields["flavor_ids"].widget, ipywidgets.Text)
    assert form.fields["flavor_mode"].widget.options == (("plain", "plain"), ("spicy", "spicy"))
    assert any("amp-section-flavor" in child._dom_classes for child in form.widget.children)

    fill(form, who="12345", flavor=True, flavor_ids="f1, f2", flavor_mode="spicy", out="flav")
    assert form.line == "%ampprofile user=12345 flavor flavor_ids=f1,f2 flavor_mode=spicy -o flav"
    click_and_wait(form)
    sent = emulator.requests[-1].params
    assert (sent["x_flavor"], sent["x_flavor_ids"], sent["x_flavor_mode"]) == ("true", "f1,f2", "spicy")
    frame = shell.user_ns["flav"]
    assert frame[["user_id", "flavored"]].to_dict("records") == [{"user_id": "12345", "flavored": True}]
    assert "flavored" in output_data(form)[1]["text/html"]


def test_choice_default_is_labelled_and_omitted(form: Any) -> None:
    """A choice's empty option reads "(default)" and, like the declared default, adds no token to the line."""
    rec_type = form.fields["rec_type"].widget
    assert rec_type.options == (("(default)", ""), ("model", "model"), ("random", "random"))
    assert rec_type.value == ""
    fill(form, who="12345", recs="testRecId", propensity="0x10x", propensity_type="score")
    assert form.line == "%ampprofile user=12345 recs=testRecId propensity=0x10x"


def test_identity_placeholder_follows_the_kind(form: Any) -> None:
    """Switching the identifier kind to device changes the id box's hint to a device id."""
    assert form.identity_value.placeholder == "user id, e.g. 12345"
    form.identity_kind.value = "device"
    assert form.identity_value.placeholder == "device id, e.g. ffff-ffff-ffff-ffff"
