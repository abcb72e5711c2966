"""Figure 4: requests per user, counted by the emulator, for every section combination and for repeats.

Every non-empty combination of the five built-in sections (31) runs as ``%ampprofile --users ids ...`` in a real
IPython shell; the emulator's ``/_emulator/stats`` request counter before and after gives requests per user. The API
forces two requests when ``props`` and ``comps`` are both asked (it merges them into one dict); everything else
should cost one. Then: a batch whose ids repeat (each id three times) should cost one request per distinct id, and
the same cell run twice costs what it costs with the local store off (as for every figure but 7), so the second run
asks again; figure 7 measures the store, where it costs nothing.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from _harness import EmulatorProcess, Row, emulator_process, magic, magic_shell, user_ids

SECTIONS = {
    "recs": "recs=recA,recB",
    "props": "props",
    "cohorts": "cohorts",
    "comps": "comps",
    "propensity": "propensity=0x10x,0x11x",
}


def _count(emulator: EmulatorProcess, shell: Any, line: str, cell: str | None = None) -> int:
    before = int(emulator.stats()["requests"])
    magic(shell, line, cell)
    return int(emulator.stats()["requests"]) - before


def run(*, quick: bool) -> list[Row]:
    """Figure 4: one row for the section combinations, one for duplicates, one for a repeated cell."""
    users = 4 if quick else 10
    with emulator_process() as emulator:
        ids = user_ids(users, users=5000)
        shell, _ = magic_shell(emulator, requests_per_minute=600_000)
        shell.user_ns["ids"] = ids
        per_combination: dict[str, float] = {}
        wrong: list[str] = []
        for size in range(1, len(SECTIONS) + 1):
            for combination in combinations(SECTIONS, size):
                tokens = " ".join(SECTIONS[name] for name in combination)
                requests = _count(emulator, shell, f"--users ids {tokens} -o result")
                per_user = requests / users
                expected = 2 if {"props", "comps"} <= set(combination) else 1
                name = "+".join(combination)
                per_combination[name] = per_user
                if per_user != expected:
                    wrong.append(f"{name}: {per_user:g} (expected {expected})")
        # Chosen computation ids behave like all of them.
        for name, tokens in (("comps=ids", "comps=c0mp001"), ("props+comps=ids", "props comps=c0mp001")):
            requests = _count(emulator, shell, f"--users ids {tokens} -o result")
            per_combination[name] = requests / users
            expected = 2 if name.startswith("props") else 1
            if requests / users != expected:
                wrong.append(f"{name}: {requests / users:g} (expected {expected})")
        twos = sorted(name for name, value in per_combination.items() if value == 2)

        shell.user_ns["repeated_ids"] = [user for user in ids for _ in range(3)]
        duplicates_line = _count(emulator, shell, "--users repeated_ids props -o result")
        duplicates_cell = _count(emulator, shell, "props -o result", "\n".join(shell.user_ns["repeated_ids"]))
        frame = shell.user_ns["result"]
        first = _count(emulator, shell, "--users ids props -o result")
        second = _count(emulator, shell, "--users ids props -o result")
    return [
        Row(
            figure="4 requests/user, 33 section combinations",
            measured=f"{len(per_combination) - len(twos)} combinations at 1, {len(twos)} at 2"
            + (f"; wrong: {'; '.join(wrong)}" if wrong else ""),
            target="1, or 2 for props+comps",
            met=not wrong,
            notes=f"{users} users per combination, emulator request counter; 2 requests for: "
            f"{', '.join(twos) or 'none'}",
            data={"users": users, "per_combination": per_combination, "wrong": wrong},
        ),
        Row(
            figure="4b duplicate ids",
            measured=f"{3 * users} ids ({users} distinct) → {duplicates_line} requests (line), "
            f"{duplicates_cell} (cell); frame has {len(frame)} rows",
            target=f"{users} requests (once per distinct id)",
            met=duplicates_line == users and duplicates_cell == users,
            notes="each id three times, via --users and via a %%ampprofile body; rows keep the input's duplicates",
            data={"ids": 3 * users, "distinct": users, "line": duplicates_line, "cell": duplicates_cell},
        ),
        Row(
            figure="4c repeated cell",
            measured=f"first run {first}, second run {second} requests",
            target="report (store off)",
            met=None,
            notes="the local store is off here, so re-running a cell re-requests every user (figure 7: the store)",
            data={"first": first, "second": second},
        ),
    ]
