"""The inline error panel: what happened, the API's own words, the likely cause and the fix."""

from __future__ import annotations

import html
from typing import Any

from amp_profile_magic import _exceptions as exc

__all__ = ["CellFailed", "error_bundle"]

TITLES: dict[type[exc.ProfileError], str] = {
    exc.MissingKey: "No secret key configured",
    exc.UnsupportedRegion: "Not available in the EU region",
    exc.InsecureEndpoint: "Insecure endpoint refused",
    exc.CassetteError: "Cassette cannot answer",
    exc.InvalidKey: "Invalid secret key",
    exc.MissingAuthHeader: "Authorization header missing",
    exc.EndpointNotFound: "Wrong endpoint or path",
    exc.PlainHttpRedirect: "Plain HTTP redirected",
    exc.UnknownUser: "Unknown user or device",
    exc.Throttled: "Rate limit exceeded",
    exc.ServerUnavailable: "Profile API unavailable",
    exc.MalformedResponse: "Unreadable response",
    exc.UnexpectedResponse: "Unexpected response",
    exc.RequestTimeout: "Request timed out",
    exc.ConnectionFailed: "Connection failed",
    exc.NotFetched: "Interrupted",
}


def _title(error: exc.ProfileError) -> str:
    for cls in type(error).__mro__:
        if cls in TITLES:
            return TITLES[cls]
    return "Profile lookup failed"


#: Characters of the API's own words the panel quotes (``error.api_message`` keeps them all).
SAID_LIMIT = 300


def _rows(error: exc.ProfileError) -> list[tuple[str, str]]:
    rows = [("What happened", error.message)]
    # One line, and not again what the message already quotes: a 502's HTML page was some thirty lines.
    said = " ".join((error.api_message or "").split())
    if said and said[:80] not in " ".join(error.message.split()):
        rows.append(("The API said", said if len(said) <= SAID_LIMIT else f"{said[: SAID_LIMIT - 1]}…"))
    if error.hint:
        rows.append(("What to do", error.hint))
    return rows


def error_bundle(error: exc.ProfileError) -> dict[str, str]:
    """A display bundle (HTML, with a plain-text fallback) for ``error``."""
    title = _title(error)
    status = f"HTTP {error.status}" if error.status else type(error).__name__
    rows = _rows(error)
    text = "\n".join([f"✖ {title} ({status})", *(f"  {label}: {value}" for label, value in rows)])
    cells = "".join(
        f"<tr><th style='text-align:left;padding:2px 12px 2px 0;vertical-align:top'>{html.escape(label)}</th>"
        f"<td style='text-align:left;padding:2px 0'>{html.escape(value)}</td></tr>"
        for label, value in rows
    )
    markup = (
        "<div class='amp-profile-error' style='border-left:4px solid #d9534f;background:rgba(217,83,79,.08);"
        "padding:6px 12px;margin:4px 0'>"
        f"<strong>✖ {html.escape(title)}</strong> <code>{html.escape(status)}</code>"
        f"<table style='margin-top:4px'>{cells}</table></div>"
    )
    return {"text/plain": text, "text/html": markup}


class CellFailed(Exception):
    """Ends the cell in error after the panel was shown, with one short line instead of a traceback."""

    def __init__(self, error: exc.ProfileError) -> None:
        super().__init__(f"{type(error).__name__}: {error.message}")
        self.error = error

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of formatting a traceback; the panel above already says the rest, so one line
        # naming the failure's class (what `except` would catch in Python) is enough.
        return [str(self)]


def display_error(error: exc.ProfileError) -> None:
    """Show the panel for ``error`` in the current cell."""
    from IPython.display import display

    bundle: Any = error_bundle(error)
    display(bundle, raw=True)
