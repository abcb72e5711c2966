"""The budget seen from a shell: %config listings mask a Redis password, and the batch summary says it paced down."""

from __future__ import annotations

from typing import Any

from IPython.utils.capture import capture_output

from amp_profile_magic._batch import BatchResult, PacingSummary
from amp_profile_magic._result import summary_line

PASSWORD = "redis-pw-3c9e1f"


def test_config_listing_masks_the_redis_password(shell: Any) -> None:
    """A redis:// URL set with %config shows with its password masked in the listing and the shell's Config."""
    shell.run_line_magic("config", f'ProfileClient.rate_limiter = "redis://:{PASSWORD}@127.0.0.1:6379/0"')
    shell.events.trigger("post_run_cell", None)  # as after every cell: scrubs the shared Config
    with capture_output() as captured:
        shell.run_line_magic("config", "ProfileClient")
    assert "redis://:********@127.0.0.1:6379/0" in captured.stdout
    assert PASSWORD not in captured.stdout
    assert PASSWORD not in repr(shell.config)
    magics = next(item for item in shell.configurables if type(item).__name__ == "AmpProfileMagics")
    assert magics.client.rate_limiter.reveal().endswith(f"{PASSWORD}@127.0.0.1:6379/0")


def test_rate_limiter_kernel_and_default_batch_in_a_shell(shell: Any) -> None:
    """rate_limiter = kernel and the default file both serve a batch; the listing names the setting."""
    for setting in ("kernel", None):
        if setting:
            shell.run_line_magic("config", f'ProfileClient.rate_limiter = "{setting}"')
        shell.run_cell("ids = ['12345', 'user-00001', 'user-00002']")
        shell.run_line_magic("ampprofile", "--users ids props --refresh -o frame")  # fetched each time
        assert shell.user_ns["frame"].attrs["summary"] == "3 profiles"


def test_summary_line_adds_the_pacing_fact() -> None:
    """The one-line summary ends with "· paced down to N/min after K throttles" when adaptive pacing lowered the
    rate, and says nothing of pacing otherwise."""
    plain = BatchResult(outcomes=(), unique_queries=0)
    paced = BatchResult(outcomes=(), unique_queries=0, pacing=PacingSummary(throttled=3, paced_down_to=240.0))
    assert summary_line(plain) == "0 profiles"
    assert summary_line(paced) == "0 profiles · paced down to 240/min after 3 throttles"
