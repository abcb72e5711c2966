"""Tab completion on the magics' lines, through IPython's own completer in a real shell and a real kernel."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from IPython.core.completer import provisionalcompleter

from amp_profile_magic._completer import MATCHER_ID

ROOT = Path(__file__).resolve().parents[2]


def offered(shell: Any, text: str, cursor: int | None = None) -> list[str]:
    """What IPython's completer offers at the end of ``text`` (or at ``cursor``), as the completed text."""
    cursor = len(text) if cursor is None else cursor
    with provisionalcompleter():
        completions = list(shell.Completer.completions(text, cursor))
    return [text[: completion.start] + completion.text for completion in completions]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("%ampprofile user=12345 rec", ["rec_type=", "recs="]),
        ("%ampprofile user=12345 pro", ["propensity=", "propensity_type=", "props"]),
        ("%ampprofile us", ["user="]),
        ("%ampprofile user=12345 co", ["cohorts", "comps", "comps="]),
        ("%ampprofile user=12345 --", ["--devices", "--dry-run", "--out", "--refresh", "--store-only", "--users"]),
        ("res = %ampprofile user=12345 coh", ["cohorts"]),
        ("%ampprofile_form user=12345 prop", ["propensity=", "propensity_type=", "props"]),
    ],
)
def test_keywords_complete_from_their_first_letters(shell: Any, text: str, expected: list[str]) -> None:
    """A partly typed keyword or option completes to the grammar's spellings, and nothing else."""
    head = text.rsplit(" ", 1)[0] + " "
    assert sorted(offered(shell, text)) == [head + word for word in expected]


def test_choice_keywords_complete_their_values(shell: Any) -> None:
    """rec_type= and propensity_type= offer their documented choices."""
    assert offered(shell, "%ampprofile user=1 rec_type=") == [
        "%ampprofile user=1 rec_type=model",
        "%ampprofile user=1 rec_type=random",
    ]
    assert offered(shell, "%ampprofile user=1 propensity=0x10x propensity_type=p") == [
        "%ampprofile user=1 propensity=0x10x propensity_type=pct"
    ]


def test_keywords_already_on_the_line_are_not_offered_again(shell: Any) -> None:
    """After `props cohorts`, an empty word offers the remaining keywords, not props or cohorts or user=."""
    words = [text.rsplit(" ", 1)[1] for text in offered(shell, "%ampprofile user=12345 props cohorts ")]
    assert {"recs=", "comps", "propensity=", "-o"} <= set(words)
    assert not {"props", "cohorts", "user="} & set(words)


def test_the_cell_magic_offers_sections_but_not_who(shell: Any) -> None:
    """%%ampprofile takes ids from its body: its first line offers sections and -o, never user= or --users."""
    words = [text.rsplit(" ", 1)[1] for text in offered(shell, "%%ampprofile ")]
    assert {"recs=", "props", "-o", "--out"} <= set(words)
    assert not {"user=", "device=", "--users", "--devices"} & set(words)
    body = "%%ampprofile props\nu"  # the body holds ids: the grammar has nothing to offer there
    assert not any(text.endswith(("user=", "--users")) for text in offered(shell, body))


def test_users_option_offers_namespace_variables(shell: Any) -> None:
    """After --users, the namespace's data variables complete; functions, modules and hidden names do not."""
    shell.user_ns.update(user_ids=["a"], users_frame=object(), use_me=len, _user_private=[1])
    assert offered(shell, "%ampprofile --users use") == [
        "%ampprofile --users user_ids",
        "%ampprofile --users users_frame",
    ]
    assert offered(shell, "%ampprofile --users user_ids --devices user_i") == [
        "%ampprofile --users user_ids --devices user_ids"
    ]
    assert offered(shell, "%ampprofile_form --users user_i") == ["%ampprofile_form --users user_ids"]
    assert "%ampprofile_form --users" in offered(shell, "%ampprofile_form --u")


def test_names_inside_braces_still_come_from_ipython(shell: Any) -> None:
    """user={ and user=$ keep IPython's own namespace completion (this matcher stays out of the way)."""
    shell.user_ns["uid_of_interest"] = "12345"
    assert "%ampprofile user={uid_of_interest" in offered(shell, "%ampprofile user={uid_of")
    assert "%ampprofile user=$uid_of_interest" in offered(shell, "%ampprofile user=$uid_of")


def test_other_lines_are_left_alone(shell: Any) -> None:
    """Python code and other magics get IPython's usual completions, not the grammar's keywords."""
    shell.user_ns["props_table"] = 1
    assert "props_table" in offered(shell, "props_t")
    assert not any("recs=" in text for text in offered(shell, "%ampprofile_emulator "))


def test_unload_removes_the_completer(shell: Any) -> None:
    """%unload_ext takes the matcher away and %load_ext puts back exactly one."""
    ids = lambda: [getattr(m, "matcher_identifier", None) for m in shell.Completer.custom_matchers]  # noqa: E731
    assert ids().count(MATCHER_ID) == 1
    shell.run_line_magic("unload_ext", "amp_profile_magic")
    assert MATCHER_ID not in ids()
    assert offered(shell, "%ampprofile user=12345 pro") == []
    shell.run_line_magic("load_ext", "amp_profile_magic")
    shell.run_line_magic("load_ext", "amp_profile_magic")
    assert ids().count(MATCHER_ID) == 1


@pytest.mark.slow
def test_a_real_kernel_completes_keywords() -> None:
    """A Jupyter kernel's complete_request (what JupyterLab's Tab sends) answers with the grammar's keywords."""
    from jupyter_client.manager import KernelManager

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env=env)
    client = manager.client()
    try:
        client.start_channels()
        client.wait_for_ready(timeout=60)
        client.execute_interactive("%load_ext amp_profile_magic", timeout=60)
        code = "%ampprofile user=12345 pro"
        reply = client.complete(code, len(code), reply=True, timeout=60)["content"]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert reply["status"] == "ok"
    assert sorted(reply["matches"]) == ["propensity=", "propensity_type=", "props"]
    assert code[reply["cursor_start"] : reply["cursor_end"]] == "pro"
