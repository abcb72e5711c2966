"""Broken section plugins, each wrong in one way a real one could be: discovery must skip each with one line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from amp_profile_magic.sections import Section


@dataclass(frozen=True)
class NoRequest:
    """The request of a section asking for nothing."""

    wanted: bool = False


class _Valid(Section):
    """Everything a section needs, so each subclass below breaks exactly one thing."""

    name = "valid"
    keywords = ("valid",)
    usage = ("valid   a section that asks for nothing",)
    request_type = NoRequest

    def request(self, tokens: Mapping[str, str | None]) -> Any:
        return NoRequest(wanted=True)

    def params(self, request: Any) -> tuple[tuple[str, str], ...]:
        return ()

    def read(self, data: Mapping[str, Any], request: Any, reader: Any) -> dict[str, Any]:
        return {}

    def frame(self, profiles: Sequence[Any]) -> pd.DataFrame:
        return pd.DataFrame({"user_id": [], "device_id": []})


class NoName(_Valid):
    """Forgot its name."""

    name = None  # type: ignore[assignment]


class RaisingName(_Valid):
    """Its name is a property that raises."""

    @property  # type: ignore[override]
    def name(self) -> str:
        raise RuntimeError("name boom")


@dataclass
class Unhashable(_Valid):
    """A plain @dataclass: __hash__ is None, and sections are dict keys."""

    name = "unhashable"
    keywords = ("unhashable",)


class StealsRecs(_Valid):
    """Claims the built-in recs keyword."""

    name = "steal"
    keywords = ("steal", "recs")


class ShadowsProperties(_Valid):
    """Fills the attribute the built-in props section owns."""

    name = "shadow"
    keywords = ("shadow",)
    attributes = ("properties",)


class DictRequest(_Valid):
    """Its request type is not a dataclass."""

    name = "dictrequest"
    keywords = ("dictrequest",)
    request_type = dict


class NoKeywords(_Valid):
    """Declares no keyword at all."""

    name = "nokeywords"
    keywords = ()


class StringKeywords(_Valid):
    """A string where a tuple belongs: each letter would become a keyword."""

    name = "strkw"
    keywords = "strkw"  # type: ignore[assignment]


class NamedProps(_Valid):
    """Takes a built-in's name."""

    name = "props"
    keywords = ("notprops",)


class Boom(_Valid):
    """Valid declarations; the hook named by ``fails`` raises, quoting a secret in its message."""

    name = "boom"
    keywords = ("boom",)
    secret = "not-a-real-secret"

    def __init__(self, fails: str) -> None:
        self.fails = fails

    def __hash__(self) -> int:
        return hash(self.fails)

    def _maybe(self, hook: str) -> None:
        if hook == self.fails:
            raise RuntimeError(f"boom in {hook}: {self.secret}")

    def request(self, tokens: Mapping[str, str | None]) -> Any:
        self._maybe("request")
        return super().request(tokens)

    def params(self, request: Any) -> tuple[tuple[str, str], ...]:
        self._maybe("params")
        return super().params(request)

    def read(self, data: Mapping[str, Any], request: Any, reader: Any) -> dict[str, Any]:
        self._maybe("read")
        return super().read(data, request, reader)

    def frame(self, profiles: Sequence[Any]) -> pd.DataFrame:
        self._maybe("frame")
        return super().frame(profiles)

    def controls(self) -> tuple[Any, ...]:
        self._maybe("controls")
        return ()
