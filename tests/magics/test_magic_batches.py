"""Batches: ``%%ampprofile`` bodies and ``--users``: every input accounted for, failures kept, requests counted."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd
import pytest
from IPython.core.error import UsageError

from amp_profile_magic._result import ProfileResult
from amp_profile_magic.emulator import Emulator

from .helpers import api_requests

BODY = """
12345

# a comment, then a blank line with spaces
   \t
user=user-00001
device=ffff-ffff-ffff-ffff
user=user-00002 device=dev-of-two
nobody
"""


def _asked(emulator: Emulator) -> Counter[tuple[str | None, str | None]]:
    return Counter((entry.params.get("user_id"), entry.params.get("device_id")) for entry in api_requests(emulator))


def test_cell_body_lines_one_section_gives_frame_with_failures(shell: Any, run: Any, emulator: Emulator) -> None:
    """Bare ids, user=, device= and both are read; blanks and comments skipped; the unknown user is in attrs."""
    done = run("%%ampprofile cohorts\n" + BODY)
    assert done.result.success, done.everything
    frame = done.result.result
    assert isinstance(frame, pd.DataFrame)
    assert _asked(emulator) == Counter(
        {
            ("12345", None): 1,
            ("user-00001", None): 1,
            (None, "ffff-ffff-ffff-ffff"): 1,
            ("user-00002", "dev-of-two"): 1,
            ("nobody", None): 1,
        }
    )
    assert frame.attrs["failures"] == [
        {
            "user_id": "nobody",
            "device_id": None,
            "kind": "unknown_user",
            "status": 400,
            "field": None,
            "message": "HTTP 400 from the Profile API: User id and device id not seen before.",
        }
    ]
    assert frame.attrs["summary"] == "4 profiles · 1 failed: unknown_user ×1"
    assert "4 profiles · 1 failed: unknown_user ×1" in done.texts()
    # The device-only input is answered as the documented example user, whose device it is.
    assert set(frame["user_id"]) == {"12345", "user-00001", "user-00002"}
    assert list(frame.loc[frame["user_id"] == "12345", "cohort_id"]) == ["cohort1", "cohort3", "cohort7"] * 2


def test_cell_several_sections_give_profile_result_with_failures_frame(run: Any) -> None:
    """Several sections give a ProfileResult whose .failures frame has one row per failed input."""
    done = run("%%ampprofile props cohorts -o batch\n12345\nnobody\nuser-00003\nghost")
    assert done.result.success, done.everything
    assert done.result.result is None  # bound with -o: nothing goes to Out
    shown = done.texts()
    assert shown[0] == "2 profiles · 2 failed: unknown_user ×2"
    assert shown[1].startswith("batch = ProfileResult (props 2×")


def test_failures_frame_columns_and_every_input_accounted(shell: Any, run: Any) -> None:
    """res.failures lists each failed input (user_id, device_id, kind, status, message); ok + failed = inputs."""
    done = run("%%ampprofile props cohorts -o res\n12345\nnobody\nuser-00003\nghost")
    assert done.result.success
    res = shell.user_ns["res"]
    assert isinstance(res, ProfileResult)
    assert list(res.failures.columns) == ["user_id", "device_id", "kind", "status", "field", "message"]
    assert list(res.failures["user_id"]) == ["nobody", "ghost"]
    assert list(res.failures["kind"]) == ["unknown_user", "unknown_user"]
    assert str(res.failures["status"].dtype) == "Int64"
    assert list(res.props["user_id"]) == ["12345", "user-00003"]
    assert len(res.props) + len(res.failures) == 4


def test_duplicates_are_requested_once_and_kept_per_input(shell: Any, emulator: Emulator) -> None:
    """The same id given three times costs one request, and the summary still counts three inputs."""
    shell.user_ns["ids"] = ["12345", "user-00001", "12345", "12345"]
    frame = shell.run_line_magic("ampprofile", "--users ids props")
    assert _asked(emulator) == Counter({("12345", None): 1, ("user-00001", None): 1})
    assert frame.attrs["summary"] == "4 profiles"
    assert list(frame["user_id"]) == ["12345", "user-00001", "12345", "12345"]


@pytest.mark.parametrize(
    ("sections", "per_user"),
    [
        ("recs=testRecId props cohorts propensity=0x10x,0x11x", 1),
        ("recs=testRecId cohorts comps propensity=0x10x", 1),
        ("props comps=c0mp001", 2),
        ("props comps cohorts", 2),
    ],
)
def test_one_request_per_user_except_props_with_comps(
    shell: Any, emulator: Emulator, sections: str, per_user: int
) -> None:
    """Any mix of sections costs one request per user, except props together with comps, which costs two."""
    shell.user_ns["ids"] = ["12345", "user-00001", "user-00002"]
    shell.run_line_magic("ampprofile", f"--users ids {sections}")
    asked = _asked(emulator)
    assert asked == Counter({(user, None): per_user for user in ("12345", "user-00001", "user-00002")})


def test_all_unknown_users_still_returns_an_accounted_empty_result(run: Any) -> None:
    """A batch where every user is unknown ends normally with an empty frame and every failure listed."""
    done = run("%%ampprofile cohorts\nnobody\nghost")
    assert done.result.success
    frame = done.result.result
    assert list(frame.columns) == ["user_id", "device_id", "cohort_id"]
    assert frame.empty
    assert [failure["user_id"] for failure in frame.attrs["failures"]] == ["nobody", "ghost"]
    assert "0 profiles · 2 failed: unknown_user ×2" in done.texts()


@pytest.mark.parametrize("cell", ["%%ampprofile cohorts -o out\nnobody", "%ampprofile --users ids cohorts -o out"])
def test_a_batch_of_one_failing_id_is_still_a_batch(shell: Any, run: Any, cell: str) -> None:
    """One id in a body or a variable keeps batch rules: the failure is listed and the name is bound."""
    shell.user_ns["ids"] = ["nobody"]
    done = run(cell)
    assert done.result.success, done.everything
    assert "0 profiles · 1 failed: unknown_user ×1" in done.texts()
    assert [failure["user_id"] for failure in shell.user_ns["out"].attrs["failures"]] == ["nobody"]
    single = run("%ampprofile user=nobody cohorts")  # a single lookup fails the cell, as before
    assert not single.result.success


@pytest.mark.parametrize(
    ("cell", "named"),
    [
        ("%%ampprofile cohorts\nuser=12345 bogus=1", "line 1: 'bogus=1'"),
        ("%%ampprofile cohorts\n12345\nuser=", "line 2: user= needs an id"),
        ("%%ampprofile cohorts\nuser=1 user=2", "line 1: user= given twice"),
        ("%%ampprofile cohorts\n\n# only a comment\n", "lists no ids"),
        ("%%ampprofile user=12345 cohorts\n12345", "one id per line in the cell body"),
        ("%%ampprofile --users ids cohorts\n12345", "in %%ampprofile put ids in the cell body"),
        ("%%ampprofile\n12345", "nothing to fetch"),
        ("%%ampprofile cohorts\n1,2", "comma"),
    ],
)
def test_bad_cells_are_usage_errors_and_send_nothing(run: Any, emulator: Emulator, cell: str, named: str) -> None:
    """A bad body line, an empty body or ids in the header is a UsageError naming the problem; nothing is sent."""
    done = run(cell)
    assert done.result.success is False
    assert isinstance(done.result.error_in_exec, UsageError)
    assert named in str(done.result.error_in_exec)
    assert api_requests(emulator) == []


def test_run_cell_magic_raises_usage_error_directly(shell: Any, emulator: Emulator) -> None:
    """Called as run_cell_magic, a bad body raises the UsageError itself."""
    with pytest.raises(UsageError, match="line 1"):
        shell.run_cell_magic("ampprofile", "cohorts", "user=12345 nope")
    assert api_requests(emulator) == []


def test_progress_bar_shows_for_batches_only(shell: Any, run: Any, magics: Any) -> None:
    """With progress on, a batch draws a text progress bar on stderr; a single lookup draws none."""
    magics.progress = True
    batch = run("%%ampprofile cohorts\n12345\nuser-00001\nuser-00002")
    assert batch.result.success
    assert "ampprofile" in batch.stderr
    assert "/3 " in batch.stderr
    single = run("%ampprofile user=12345 cohorts")
    assert single.result.success
    assert single.stderr == ""
