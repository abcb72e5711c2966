"""The help a user reads lists what the installed sections declare, so a section's help has one source."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from IPython.utils.capture import capture_output

from amp_profile_magic.sections import available_sections

README = Path(__file__).resolve().parent.parent / "README.md"


def _normal(text: str) -> str:
    return " ".join(text.split())


def _usage_lines() -> list[str]:
    return [_normal(line) for section in available_sections().values() for line in section.usage]


def _keyword_lines(text: str) -> list[str]:
    """The lines of ``text`` that start with a section keyword, whitespace-normalised."""
    keywords = {keyword for section in available_sections().values() for keyword in section.keywords}
    pattern = re.compile(rf"^({'|'.join(sorted(keywords, key=len, reverse=True))})\b")
    return [_normal(line) for line in text.splitlines() if pattern.match(line.strip())]


def test_readme_grammar_table_lists_the_sections_usage() -> None:
    """The README's grammar block holds each built-in section's usage lines, and no section line they lack."""
    block = README.read_text(encoding="utf-8").split("### Grammar", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    assert _keyword_lines(block) == _usage_lines()


def test_magic_help_lists_the_sections_usage(shell: Any) -> None:
    """``%ampprofile?`` lists each installed section's usage lines, in the sections' order."""
    with capture_output() as captured:
        shell.run_line_magic("pinfo", "%ampprofile")
    sections = captured.stdout.split("the lines below come from the installed sections):", 1)[1]
    assert _keyword_lines(sections.split("Section plugins", 1)[0]) == _usage_lines()


def test_sections_listing_prints_every_usage_line(shell: Any) -> None:
    """``%ampprofile --sections`` prints every installed section with its usage lines."""
    with capture_output() as captured:
        shell.run_line_magic("ampprofile", "--sections")
    printed = [_normal(line) for line in captured.stdout.splitlines()]
    for section in available_sections().values():
        assert any(line.startswith(f"{section.name} (") for line in printed)
    assert all(line in printed for line in _usage_lines())


def test_the_form_shows_each_sections_help_lines(shell: Any) -> None:
    """Each section's group in the form carries its usage lines as the tooltip of its name."""
    form = shell.run_line_magic("ampprofile_form", "")
    tooltips = {
        group._dom_classes[0].removeprefix("amp-section-"): group.children[0].tooltip
        for group in form.widget.children
        if group._dom_classes and group._dom_classes[0].startswith("amp-section-")
    }
    for name, section in available_sections().items():
        if section.controls():
            assert tooltips[name] == "\n".join(section.usage)
