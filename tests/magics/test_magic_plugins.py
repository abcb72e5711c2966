"""Sections are plugins: one registered at run time and one found through a real entry point both work."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from amp_profile_magic import sections
from amp_profile_magic._models import Profile, Reader
from amp_profile_magic._result import ProfileResult
from amp_profile_magic.emulator import Emulator
from amp_profile_magic.sections import Section, SectionUsageError, _registry

from .helpers import api_requests


@dataclass(frozen=True)
class EchoRequest:
    """The word to send; empty is "not asked"."""

    echo: str = ""


class EchoSection(Section):
    """A test section: ``echo=WORD`` adds ``echo=WORD`` to the request and reports the raw userData keys."""

    name = "echo"
    keywords = ("echo",)
    usage = ("echo=WORD              send echo=WORD and list the response's userData keys",)
    attributes = ("echo_keys", "echo_cohorts")
    request_type = EchoRequest

    def request(self, tokens: Mapping[str, str | None]) -> EchoRequest:
        word = tokens["echo"]
        if not word:
            raise SectionUsageError("echo= needs a word, e.g. echo=hello")
        return EchoRequest(word)

    def params(self, request: EchoRequest) -> tuple[tuple[str, str], ...]:
        return (("echo", request.echo),)

    def read(self, data: Mapping[str, Any], request: EchoRequest, reader: Reader) -> dict[str, Any]:
        return {"echo_keys": ",".join(sorted(data)), "echo_cohorts": data.get("cohort_ids")}

    def frame(self, profiles: Sequence[Profile]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "user_id": [profile.user_id for profile in profiles],
                "device_id": [profile.device_id for profile in profiles],
                "raw_keys": [profile.echo_keys for profile in profiles],
                "cohort_ids_raw": [profile.echo_cohorts for profile in profiles],
            }
        )


def test_registered_section_is_usable_from_the_magic(shell: Any, emulator: Emulator) -> None:
    """sections.register(...) adds a keyword whose extra query parameter reaches the API and whose frame reads raw."""
    sections.register(EchoSection())
    frame = shell.run_line_magic("ampprofile", "user=12345 echo=hello")
    assert [entry.params for entry in api_requests(emulator)] == [{"user_id": "12345", "echo": "hello"}]
    assert list(frame.columns) == ["user_id", "device_id", "raw_keys", "cohort_ids_raw"]
    assert frame.loc[0, "raw_keys"] == "amp_props,cohort_ids,device_id,recommendations,user_id"
    assert frame.loc[0, "cohort_ids_raw"] is None

    emulator.reset()
    res = shell.run_line_magic("ampprofile", "user=12345 cohorts echo=again")
    assert isinstance(res, ProfileResult)
    assert list(res) == ["cohorts", "echo"]
    assert [entry.params for entry in api_requests(emulator)] == [
        {"user_id": "12345", "get_cohort_ids": "true", "echo": "again"}
    ]
    assert res.echo.loc[0, "cohort_ids_raw"] == ["cohort1", "cohort3", "cohort7"]

    with capture_output() as listed:
        shell.run_line_magic("ampprofile", "--sections")
    assert "echo  (" in listed.stdout
    assert "send echo=WORD" in listed.stdout


def test_registered_section_errors_and_unregistering(shell: Any, emulator: Emulator) -> None:
    """A plugin's bad value is a UsageError naming it; after unregister the keyword is unknown again."""
    sections.register(EchoSection())
    with pytest.raises(UsageError, match="echo= needs a word"):
        shell.run_line_magic("ampprofile", "user=12345 echo=")
    sections.unregister("echo")
    with pytest.raises(UsageError, match="unknown keyword 'echo'"):
        shell.run_line_magic("ampprofile", "user=12345 echo=x")
    assert api_requests(emulator) == []


def _install_fake_distribution(root: Path, entry_points: str) -> None:
    info = root / "amp_shout_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: amp-shout-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    (root / "amp_shout_plugin.py").write_text(
        textwrap.dedent(
            '''
            """A third-party section, installed the ordinary way: a distribution with an entry point."""

            from dataclasses import dataclass

            import pandas as pd

            from amp_profile_magic.sections import Section, SectionUsageError


            @dataclass(frozen=True)
            class ShoutRequest:
                shout: bool = False


            class ShoutSection(Section):
                name = "shout"
                keywords = ("shout",)
                usage = ("shout                  the user id in capitals",)
                attributes = ("shouted",)
                request_type = ShoutRequest

                def request(self, tokens):
                    if tokens["shout"] is not None:
                        raise SectionUsageError(f"shout={tokens['shout']}: shout takes no value")
                    return ShoutRequest(True)

                def params(self, request):
                    return (("shout", "true"),)

                def read(self, data, request, reader):
                    return {"shouted": str(data.get("user_id")).upper() + "!"}

                def frame(self, profiles):
                    return pd.DataFrame({
                        "user_id": [p.user_id for p in profiles],
                        "device_id": [p.device_id for p in profiles],
                        "shouted": [p.shouted for p in profiles],
                    })
            '''
        )
    )


def test_entry_point_plugin_is_discovered(
    shell: Any, emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A distribution on sys.path declaring an amp_profile_magic.sections entry point adds its keyword."""
    _install_fake_distribution(
        tmp_path,
        "[amp_profile_magic.sections]\nshout = amp_shout_plugin:ShoutSection\nbroken = amp_no_such_module:Nope\n",
    )
    with pytest.raises(UsageError, match="unknown keyword 'shout'"):
        shell.run_line_magic("ampprofile", "user=12345 shout")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        _registry.reset()
        found = sections.available_sections()
        assert list(found)[:5] == ["recs", "props", "cohorts", "comps", "propensity"]
        assert "shout" in found
        assert "broken" not in found
        frame = shell.run_line_magic("ampprofile", "user=user-00007 shout")
        assert frame.values.tolist()[0][2] == "USER-00007!"
        assert api_requests(emulator)[-1].params == {"user_id": "user-00007", "shout": "true"}
        # The broken entry point beside it did not take the built-ins down.
        assert list(shell.run_line_magic("ampprofile", "user=12345 cohorts")["cohort_id"]) == [
            "cohort1",
            "cohort3",
            "cohort7",
        ]
        with pytest.raises(UsageError, match="shout=loud: shout takes no value"):
            shell.run_line_magic("ampprofile", "user=12345 shout=loud")
    finally:
        sys.modules.pop("amp_shout_plugin", None)
