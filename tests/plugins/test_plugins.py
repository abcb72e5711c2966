"""Two section plugins installed through entry points get everything the built-ins get, with no package edit.

``loyalty`` reads a hypothetical ``userData`` field with query parameters of its own; ``experiments`` reads
``amp_props``, which the built-in ``props`` and ``comps`` read too, so the request-splitting rule applies to it.
"""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from amp_profile_magic import InvalidQuery, ProfileClient, ProfileQuery
from amp_profile_magic._result import ProfileResult
from amp_profile_magic.sections import available_sections
from tests.conftest import CANARY_KEY
from tests.form.conftest import click_and_wait, fill, output_data

from .conftest import PluginApi


def test_the_entry_points_add_both_sections_after_the_builtins(installed: Any) -> None:
    """Discovery through the throwaway distribution lists the plugins after the five built-ins."""
    assert list(available_sections()) == ["recs", "props", "cohorts", "comps", "propensity", "loyalty", "experiments"]


def test_grammar_planning_and_frames(plugin_shell: Any, plugin_api: PluginApi) -> None:
    """A line with the plugin's keywords sends its parameters in the shared request and builds its frame."""
    res = plugin_shell.run_line_magic("ampprofile", "user=u1 cohorts loyalty loyalty_program=p2,p3")
    assert plugin_api.requests == [
        {"user_id": "u1", "get_cohort_ids": "true", "get_loyalty": "true", "loyalty_program": "p2,p3"}
    ]
    assert isinstance(res, ProfileResult)
    assert list(res) == ["cohorts", "loyalty"]
    assert res.loyalty.to_dict("records") == [
        {"user_id": "u1", "device_id": None, "program": "p2", "tier": "gold", "points": 120},
        {"user_id": "u1", "device_id": None, "program": "p3", "tier": "gold", "points": 120},
    ]
    assert list(res.cohorts["cohort_id"]) == ["cohort-a"]


def test_validation_is_the_plugins_own(plugin_shell: Any, plugin_api: PluginApi) -> None:
    """Bad plugin tokens and arguments fail with the plugin's one-line message, from the magic and Python alike."""
    with pytest.raises(UsageError, match="loyalty=gold: loyalty takes no value"):
        plugin_shell.run_line_magic("ampprofile", "user=u1 loyalty=gold")
    with pytest.raises(UsageError, match="loyalty_program needs loyalty=… too"):
        plugin_shell.run_line_magic("ampprofile", "user=u1 loyalty_program=p1")
    with pytest.raises(UsageError, match="loyalty_program= needs one or more comma-separated ids"):
        plugin_shell.run_line_magic("ampprofile", "user=u1 loyalty loyalty_program=")
    with pytest.raises(UsageError, match="unknown keyword 'loyalti'; did you mean 'loyalty'"):
        plugin_shell.run_line_magic("ampprofile", "user=u1 loyalti")
    with pytest.raises(InvalidQuery, match="loyalty_program: only applies to loyalty"):
        ProfileQuery(user_id="u1", loyalty_programs=["p1"])
    with pytest.raises(InvalidQuery, match="loyalty_program: 'a,b' contains a comma"):
        ProfileQuery(user_id="u1", loyalty=True, loyalty_programs=["a,b"])
    assert plugin_api.requests == []


def test_python_lookup_takes_the_plugins_keyword_arguments(installed: Any, plugin_api: PluginApi) -> None:
    """ProfileClient.lookup(loyalty=True) sends the plugin's parameters; the profile has its attribute."""
    client = ProfileClient(endpoint=plugin_api.url, api_key=CANARY_KEY, store="off", requests_per_minute=600_000)
    try:
        profile = client.lookup(user_id="u1", loyalty=True, props=True)
    finally:
        client.close()
    assert plugin_api.requests == [{"user_id": "u1", "get_amp_props": "true", "get_loyalty": "true"}]
    assert profile.loyalty == (("p1", "gold", 120), ("p2", "gold", 120))
    assert profile.properties == {"plan": "pro"}
    assert profile.cohort_ids is None
    assert profile.experiment_flags is None
    assert ProfileQuery(user_id="u1", loyalty=True).loyalty_programs == ()


def test_help_lists_the_plugins(plugin_shell: Any) -> None:
    """%ampprofile? and %ampprofile --sections show each plugin's usage lines."""
    with capture_output() as shown:
        plugin_shell.run_line_magic("pinfo", "%ampprofile")
    with capture_output() as listed:
        plugin_shell.run_line_magic("ampprofile", "--sections")
    for section in ("loyalty", "experiments"):
        for line in available_sections()[section].usage:
            assert line in shown.stdout
            assert line in listed.stdout
    assert "loyalty  (tests.plugins.loyalty.LoyaltySection)" in listed.stdout


def test_the_form_gets_the_plugins_controls_and_fetches(plugin_shell: Any, plugin_api: PluginApi) -> None:
    """The form grows the loyalty controls, shows the equivalent line, and Fetch binds the plugin's frame."""
    form = plugin_shell.run_line_magic("ampprofile_form", "user=u1 loyalty")
    try:
        assert form.fields["loyalty"].widget.value is True
        fill(form, who="u7", loyalty=True, loyalty_program="p1", out="points")
        assert form.line == "%ampprofile user=u7 loyalty loyalty_program=p1 -o points"
        click_and_wait(form)
    finally:
        form.widget.close()
    assert output_data(form)[0]["text/plain"].startswith("points = DataFrame (1 rows × 5 columns)")
    assert plugin_shell.user_ns["points"]["points"].tolist() == [120]
    assert plugin_api.requests == [{"user_id": "u7", "get_loyalty": "true", "loyalty_program": "p1"}]


@pytest.mark.parametrize(
    ("line", "requests"),
    [
        ("experiments cohorts", [{"get_cohort_ids": "true", "get_experiment_props": "true"}]),
        ("props experiments", [{"get_amp_props": "true"}, {"get_experiment_props": "true"}]),
        (
            "props comps experiments loyalty",
            [
                {"get_amp_props": "true", "get_loyalty": "true"},
                {"get_computations": "true"},
                {"get_experiment_props": "true"},
            ],
        ),
        ("comps experiments", [{"get_computations": "true"}, {"get_experiment_props": "true"}]),
    ],
)
def test_a_plugin_reading_amp_props_is_split_by_the_rule(
    plugin_shell: Any, plugin_api: PluginApi, line: str, requests: list[dict[str, str]]
) -> None:
    """Sections reading amp_props never share a request, a plugin's included; each frame reads only its own."""
    res = plugin_shell.run_line_magic("ampprofile", f"user=u1 {line}")
    assert plugin_api.requests == [{"user_id": "u1", **params} for params in requests]
    frames = res if isinstance(res, ProfileResult) else {"experiments": res}
    assert frames["experiments"].drop(columns=["user_id", "device_id"]).to_dict("records") == [{"exp_checkout": "B"}]
    if "props" in frames:
        assert frames["props"].drop(columns=["user_id", "device_id"]).to_dict("records") == [{"plan": "pro"}]
    if "comps" in frames:
        assert frames["comps"].drop(columns=["user_id", "device_id"]).to_dict("records") == [{"c1": 3}]
