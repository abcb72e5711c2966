"""``%load_ext`` / ``%unload_ext`` / ``%reload_ext``, a light load, and ``%ampprofile?`` help."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from amp_profile_magic.emulator import Emulator

from .helpers import magics_of

HEAVY = (
    *("pandas", "httpx", "uvicorn", "ipywidgets", "amp_profile_magic._budget", "amp_profile_magic._store"),
    *("orjson", "pyrate_limiter", "filelock", "redis"),
)


@pytest.fixture
def bare_shell() -> Iterator[Any]:
    """The real IPython shell without the extension loaded (and unloaded again afterwards)."""
    ip = InteractiveShell.instance()
    if "amp_profile_magic" in ip.extension_manager.loaded:
        ip.run_line_magic("unload_ext", "amp_profile_magic")
    yield ip
    if "amp_profile_magic" in ip.extension_manager.loaded:
        ip.run_line_magic("unload_ext", "amp_profile_magic")
    ip.reset(new_session=False)


def _registered(ip: Any) -> dict[str, bool]:
    magics = ip.magics_manager.magics
    return {
        "line ampprofile": "ampprofile" in magics["line"],
        "cell ampprofile": "ampprofile" in magics["cell"],
        "line ampprofile_emulator": "ampprofile_emulator" in magics["line"],
    }


def _ours(ip: Any) -> list[str]:
    return [
        type(item).__name__ for item in ip.configurables if type(item).__name__ in ("AmpProfileMagics", "ProfileClient")
    ]


def test_load_registers_line_and_cell_magics_once(bare_shell: Any) -> None:
    """%load_ext adds %ampprofile, %%ampprofile and %ampprofile_emulator and one magics + one client configurable."""
    assert not any(_registered(bare_shell).values())
    bare_shell.run_line_magic("load_ext", "amp_profile_magic")
    assert all(_registered(bare_shell).values())
    assert _ours(bare_shell) == ["AmpProfileMagics", "ProfileClient"]
    # Loading twice changes nothing.
    bare_shell.run_line_magic("load_ext", "amp_profile_magic")
    assert _ours(bare_shell) == ["AmpProfileMagics", "ProfileClient"]


def test_unload_removes_everything_and_reload_works(bare_shell: Any, emulator: Emulator) -> None:
    """%unload_ext removes the magics and configurables; %load_ext again gives working magics (also %reload_ext)."""
    bare_shell.run_line_magic("load_ext", "amp_profile_magic")
    bare_shell.run_line_magic("unload_ext", "amp_profile_magic")
    assert not any(_registered(bare_shell).values())
    assert _ours(bare_shell) == []
    assert "AmpProfileMagics" not in bare_shell.magics_manager.registry
    with capture_output():
        gone = bare_shell.run_cell("%ampprofile user=12345 cohorts")
    assert gone.success is False
    assert "Line magic function `%ampprofile` not found" in str(gone.error_in_exec)

    bare_shell.run_line_magic("load_ext", "amp_profile_magic")
    bare_shell.run_line_magic("reload_ext", "amp_profile_magic")
    assert all(_registered(bare_shell).values())
    assert _ours(bare_shell) == ["AmpProfileMagics", "ProfileClient"]
    magics = magics_of(bare_shell)
    magics.client.endpoint = emulator.url
    magics.client.api_key = emulator.api_key
    frame = bare_shell.run_line_magic("ampprofile", "user=12345 cohorts")
    assert list(frame["cohort_id"]) == ["cohort1", "cohort3", "cohort7"]


def test_load_ext_imports_nothing_heavy() -> None:
    """In a fresh interpreter, %load_ext (and listing the settings) leaves pandas, httpx, uvicorn, ipywidgets, the
    rate budget code and redis unimported."""
    script = textwrap.dedent(
        f"""
        import sys
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        before = {{name for name in {HEAVY!r} if name in sys.modules}}
        ip.run_line_magic("load_ext", "amp_profile_magic")
        assert "ampprofile" in ip.magics_manager.magics["line"]
        ip.run_line_magic("config", "ProfileClient")
        print(sorted({{name for name in {HEAVY!r} if name in sys.modules}} - before))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_help_shows_the_whole_grammar_with_examples(shell: Any) -> None:
    """%ampprofile? prints the docstring: every keyword, option and In [n]: example reaches the user."""
    with capture_output() as captured:
        shell.run_line_magic("pinfo", "%ampprofile")
    shown = captured.stdout
    for token in (
        "user=ID",
        "device=ID",
        "recs=ID",
        "rec_type=model|random",
        "props",
        "cohorts",
        "comps=ID",
        "propensity=ID",
        "propensity_type=score|pct",
        "--users VARIABLE",
        "--devices",
        "-o NAME",
        "{expr}",
        "$uid",
        "$$  {{  }}",
        "user='john smith'",
        "%%ampprofile",
        "In [3]: %ampprofile user=12345 recs=testRecId,testRecId2",
        "%config ProfileClient",
    ):
        assert token in shown, token
    line_doc = shell.find_line_magic("ampprofile").__doc__
    cell_doc = shell.find_cell_magic("ampprofile").__doc__
    assert "In [1]:" in line_doc
    assert "user=ID" in cell_doc
    assert "%%ampprofile recs=testRecId" in cell_doc


def test_sections_option_lists_every_section(shell: Any) -> None:
    """%ampprofile --sections lists the five built-in sections with their usage lines."""
    with capture_output() as captured:
        shell.run_line_magic("ampprofile", "--sections")
    for name in ("recs", "props", "cohorts", "comps", "propensity"):
        assert f"{name}  (amp_profile_magic.sections." in captured.stdout
    assert "rec_type=model|random" in captured.stdout
