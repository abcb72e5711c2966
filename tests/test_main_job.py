"""The README's main command, run as written: the quickstart executes offline, with no key, into HTML to look at."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL = "python3 -m pip install -e '.[notebook]' && "


def main_command() -> str:
    """The command in the code block under README's **Run the main job**."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"\*\*Run the main job\*\*.*?```bash\n(?P<command>.+?)\n```", readme, re.DOTALL)
    assert match is not None, "README has no main-job command block"
    return match["command"]


def test_main_command_installs_what_it_runs() -> None:
    """The command installs the notebook extra, and that extra brings nbconvert, the tool it then calls."""
    command = main_command()
    assert command.startswith(INSTALL)
    assert shlex.split(command.removeprefix(INSTALL))[:2] == ["jupyter", "nbconvert"]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(re.match(r"nbconvert\b", requirement) for requirement in extras["notebook"])


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_main_command_leaves_the_quickstart_as_html_and_prints_its_path(tmp_path: Path, closed_url: str) -> None:
    """Run on a copy of the notebooks, no key, no reachable API: the path is printed and the HTML has the tables."""
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    argv = shlex.split(main_command().removeprefix(INSTALL))  # the package is installed already
    env = {key: value for key, value in os.environ.items() if not key.startswith("AMPLITUDE_")}
    env.update(
        AMPLITUDE_PROFILE_URL=closed_url,  # nothing answers there: the emulator must be all it needs
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        # The jupyter of the interpreter running the tests (a venv need not be activated).
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    )
    executable = shutil.which(argv[0], path=env["PATH"])
    assert executable is not None, f"{argv[0]} not found next to {sys.executable} or on PATH"
    completed = subprocess.run(
        [executable, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=360, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    written = re.findall(r"Writing \d+ bytes to (\S+)", completed.stderr)
    assert written == ["build/quickstart.html"]
    page = (tmp_path / written[0]).read_text()
    # One table per lookup of the quickstart (recs, props, cohorts, comps twice, propensity, the combined result).
    assert page.count("<table") >= 8
    for shown in ("testRecId2", "cookie", "0x10x", "t14bqib", "Using the bundled emulator"):
        assert shown in page
    assert "Traceback" not in page
    assert "ename" not in page
