"""``amp-profile-magic enable|disable|status`` and real kernels that load ``%ampprofile`` without ``%load_ext``."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from amp_profile_magic import _extension_cli as cli

ROOT = Path(__file__).resolve().parents[2]
FRAGMENT = ROOT / "jupyter-config" / "ipython_kernel_config.json"

PROBE = """
print("LOADED", "amp_profile_magic" in get_ipython().extension_manager.loaded)
print("MAGIC", get_ipython().find_line_magic("ampprofile") is not None)
"""
LOOKUP = """
%ampprofile_emulator
df = %ampprofile user=12345 cohorts
print("COHORTS", list(df["cohort_id"]))
"""


@pytest.fixture
def ipython_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private IPYTHONDIR (the user scope) for this test and the processes it starts."""
    directory = tmp_path / "ipython"
    monkeypatch.setenv("IPYTHONDIR", str(directory))
    return directory


def _user_file(ipython_dir: Path) -> Path:
    return ipython_dir / "profile_default" / "ipython_kernel_config.json"


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- the command, in process --------------------------------------------------------------------------------------


def test_enable_writes_exactly_the_shipped_fragment(ipython_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Into an empty profile, enable writes the same JSON as jupyter-config/ipython_kernel_config.json."""
    code, out, _ = _main(capsys, "enable")
    assert code == 0
    path = _user_file(ipython_dir)
    assert f"Enabled amp_profile_magic in {path}." in out
    assert "New IPython kernels load amp_profile_magic: yes" in out
    assert path.read_text() == FRAGMENT.read_text()


def test_enable_merges_and_is_idempotent_and_disable_restores(
    ipython_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """enable keeps other keys and extensions, a second enable changes nothing, disable gives the original back."""
    path = _user_file(ipython_dir)
    path.parent.mkdir(parents=True)
    original = {
        "IPKernelApp": {"extensions": ["autoreload"], "matplotlib": "inline"},
        "InlineBackend": {"figure_format": "svg"},
    }
    path.write_text(json.dumps(original))
    assert _main(capsys, "enable", "--user")[0] == 0
    merged = json.loads(path.read_text())
    assert merged == {
        "IPKernelApp": {"extensions": ["autoreload", "amp_profile_magic"], "matplotlib": "inline"},
        "InlineBackend": {"figure_format": "svg"},
    }
    before = path.read_text()
    code, out, _ = _main(capsys, "enable")
    assert code == 0
    assert "already enabled" in out
    assert path.read_text() == before
    assert _main(capsys, "disable")[0] == 0
    assert json.loads(path.read_text()) == original
    code, out, _ = _main(capsys, "disable")
    assert (code, "already disabled" in out) == (0, True)


def test_enable_uses_an_existing_interactive_shell_app_list(
    ipython_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A list kept under InteractiveShellApp.extensions is extended there, not shadowed by a new IPKernelApp one."""
    path = _user_file(ipython_dir)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"InteractiveShellApp": {"extensions": ["storemagic"]}}))
    assert _main(capsys, "enable")[0] == 0
    assert json.loads(path.read_text()) == {"InteractiveShellApp": {"extensions": ["storemagic", "amp_profile_magic"]}}


def test_disable_of_our_only_setting_removes_the_file(ipython_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """When amp_profile_magic was the file's only content, disable leaves no file behind."""
    assert _main(capsys, "enable")[0] == 0
    assert _main(capsys, "disable")[0] == 0
    assert not _user_file(ipython_dir).exists()


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "does not hold a JSON object"),
        ('{"IPKernelApp": {"extensions": "amp_profile_magic"}}', "IPKernelApp.extensions is not a list"),
        ('{"IPKernelApp": []}', "IPKernelApp is not a JSON object"),
        (b"\xff\xfe{}", "is not UTF-8 text"),
        ("[" * 100_000 + "]" * 100_000, "nests too deeply to be a config"),
    ],
    ids=["not-json", "list", "extensions-str", "section-list", "utf-16", "deep"],
)
def test_unusable_config_is_left_untouched(
    ipython_dir: Path, capsys: pytest.CaptureFixture[str], content: str | bytes, named: str
) -> None:
    """A config file that is not the expected JSON is reported in one line and not rewritten."""
    path = _user_file(ipython_dir)
    path.parent.mkdir(parents=True)
    raw = content if isinstance(content, bytes) else content.encode()
    path.write_bytes(raw)
    for command in ("enable", "disable"):
        code, _, err = _main(capsys, command)
        assert code == 1
        assert named in err
        assert "Nothing was changed." in err
        assert "Traceback" not in err
        assert path.read_bytes() == raw


def test_a_null_extensions_list_reads_as_empty(ipython_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ "extensions": null lists nothing: status says no, enable makes it a list holding the extension."""
    path = _user_file(ipython_dir)
    path.parent.mkdir(parents=True)
    path.write_text('{"IPKernelApp": {"extensions": null}}')
    assert _main(capsys, "disable")[0] == 0
    assert _main(capsys, "status")[0] == 0
    code, _, err = _main(capsys, "enable")
    assert code == 0, err
    assert json.loads(path.read_text()) == {"IPKernelApp": {"extensions": ["amp_profile_magic"]}}


def test_status_reports_each_scope_and_the_effect(ipython_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """status names the user and sys-prefix files, their state and whether new kernels load the extension."""
    code, out, _ = _main(capsys, "status")
    assert code == 0
    assert f"user        {_user_file(ipython_dir)}: no file" in out
    assert f"sys-prefix  {Path(sys.prefix) / 'etc' / 'ipython' / 'ipython_kernel_config.json'}:" in out
    _main(capsys, "enable")
    code, out, _ = _main(capsys, "status")
    assert f"{_user_file(ipython_dir)}: enabled" in out
    assert f"New IPython kernels load amp_profile_magic: yes (decided by {_user_file(ipython_dir)})" in out
    script = ipython_dir / "profile_default" / "ipython_kernel_config.py"
    script.write_text("c.IPKernelApp.extensions = ['autoreload']\n")
    out = _main(capsys, "status")[1]
    assert f"note: {script} mentions extensions" in out


def test_console_script_is_this_command() -> None:
    """The installed `amp-profile-magic` console script runs this module's main()."""
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="amp-profile-magic")
    assert script.load() is cli.main


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """No command, an unknown command or both scopes at once is an argparse usage error (exit status 2)."""
    for argv in ([], ["frobnicate"], ["enable", "--user", "--sys-prefix"]):
        with pytest.raises(SystemExit) as exited:
            cli.main(argv)
        assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


# -- real kernels -------------------------------------------------------------------------------------------------


def _environment(ipython_dir: Path, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        IPYTHONDIR=str(ipython_dir),
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        AMPLITUDE_SECRET_KEY="",
        AMPLITUDE_PROFILE_URL="",
    )
    env.pop("PYTHONSTARTUP", None)
    return env


def _run_in_kernel(code: str, env: dict[str, str], python: str | None = None, tmp_path: Path | None = None) -> str:
    """Start a real kernel (optionally on another interpreter), run ``code``, return its stdout and result text."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    if python is None:
        manager = KernelManager(kernel_name="python3")
    else:
        assert tmp_path is not None
        spec = tmp_path / "kernels" / "amp-venv"
        spec.mkdir(parents=True)
        argv = [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "venv", "language": "python"}))
        specs = KernelSpecManager(kernel_dirs=[str(spec.parent)])
        manager = KernelManager(kernel_name="amp-venv", kernel_spec_manager=specs)
    manager.start_kernel(env=env)
    client = manager.client()
    texts: list[str] = []

    def keep(message: dict[str, Any]) -> None:
        content = message["content"]
        if message["msg_type"] == "stream":
            texts.append(content["text"])
        elif message["msg_type"] in ("execute_result", "display_data"):
            texts.append(content["data"].get("text/plain", ""))
        elif message["msg_type"] == "error":
            texts.append(f"{content['ename']}: {content['evalue']}")

    try:
        client.start_channels()
        client.wait_for_ready(timeout=60)
        client.execute_interactive(code, timeout=60, output_hook=keep)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return "".join(texts)


def _cli(env: dict[str, str], *argv: str, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-m", "amp_profile_magic._extension_cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_real_kernel_loads_magic_after_enable_and_not_after_disable(ipython_dir: Path, tmp_path: Path) -> None:
    """After enable a new kernel has %ampprofile without %load_ext; after disable it has not, *.d/ fragments or no."""
    if cli.effective().enabled:
        pytest.skip(f"{cli.effective().decided_by} enables the extension for every kernel on this machine")
    env = _environment(ipython_dir, tmp_path)
    enabled = _cli(env, "enable")
    assert enabled.returncode == 0, enabled.stderr
    shown = _run_in_kernel(PROBE + LOOKUP, env)
    assert "LOADED True" in shown
    assert "MAGIC True" in shown
    assert "COHORTS ['cohort1', 'cohort3', 'cohort7']" in shown

    disabled = _cli(env, "disable")
    assert disabled.returncode == 0, disabled.stderr
    # Why the command edits one JSON file: kernels ignore *.d/ fragments and JUPYTER_CONFIG_DIR, so these do nothing.
    for fragment in (
        ipython_dir / "profile_default" / "ipython_kernel_config.d" / "amp_profile_magic.json",
        Path(env["JUPYTER_CONFIG_DIR"]) / "ipython_kernel_config.d" / "amp_profile_magic.json",
        Path(env["JUPYTER_CONFIG_DIR"]) / "ipython_kernel_config.json",
    ):
        fragment.parent.mkdir(parents=True, exist_ok=True)
        fragment.write_text(FRAGMENT.read_text())
    shown = _run_in_kernel(PROBE + "%ampprofile user=12345 cohorts\n", env)
    assert "LOADED False" in shown
    assert "MAGIC False" in shown
    assert "UsageError: Line magic function `%ampprofile` not found" in shown


def _nested_venv(venv: Path) -> Path:
    """A new virtual environment whose interpreter also imports everything this one does.

    ``venv --system-site-packages`` would not do: run from inside a virtual environment it links the *base*
    interpreter's site-packages, not the running environment's, so IPython would be missing whenever the suite
    itself runs in a venv. A .pth line that calls ``site.addsitedir`` on this interpreter's site directories adds
    them after the new environment's own, and processes their .pth files too (the editable install's among them).
    """
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    outer = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
    (inner,) = (venv / "lib").glob("python3*/site-packages")
    lines = [f"import site; site.addsitedir({directory!r})\n" for directory in outer if Path(directory).is_dir()]
    (inner / "_amp_outer_environment.pth").write_text("".join(lines))
    return venv


@pytest.mark.slow
def test_sys_prefix_enable_reaches_kernels_of_that_environment(ipython_dir: Path, tmp_path: Path) -> None:
    """In a fresh virtual environment, `enable --sys-prefix` writes {prefix}/etc/ipython and its kernels load it."""
    venv = _nested_venv(tmp_path / "venv")
    python = str(venv / "bin" / "python")
    env = _environment(ipython_dir, tmp_path)
    enabled = _cli(env, "enable", "--sys-prefix", python=python)
    assert enabled.returncode == 0, enabled.stderr
    written = venv / "etc" / "ipython" / "ipython_kernel_config.json"
    assert written.read_text() == FRAGMENT.read_text()
    assert not _user_file(ipython_dir).exists()
    assert "LOADED True" in _run_in_kernel(PROBE, env, python=python, tmp_path=tmp_path)

    # A user-level list takes precedence over the environment's: the command says so instead of pretending.
    _user_file(ipython_dir).parent.mkdir(parents=True, exist_ok=True)  # the kernel created the profile
    _user_file(ipython_dir).write_text(json.dumps({"IPKernelApp": {"extensions": ["autoreload"]}}))
    again = _cli(env, "status", python=python)
    assert f"decided by {_user_file(ipython_dir)}" in again.stdout
    assert "load amp_profile_magic: no" in again.stdout
    redo = _cli(env, "enable", "--sys-prefix", python=python)
    assert "already enabled" in redo.stdout
    assert f"warning: {_user_file(ipython_dir)} takes precedence" in redo.stderr
