"""What ``%config`` leaves in the shell's shared Config: the raw key masked, refused settings named and dropped.

``%config ProfileClient.timeout = 0`` logs the refusal and the cell succeeds; ``%config ProfileClient.timout = 5``
only warns. Either way a notebook run by nbclient, nbval or papermill goes on with the old value. After each cell
the extension checks the settings ``%config`` merged for its classes and fails the cell for any it could not
apply, in one line. The client itself knows nothing of IPython or its configurables.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from copy import deepcopy
from typing import Any

from traitlets import TraitError
from traitlets.config import Configurable

from amp_profile_magic._secret import Secret

__all__ = ["SettingsWatch", "scrub_config"]


def _root(configurable: Configurable) -> Any:
    """The shell (the top parent): ``%config`` merges every setting into its Config, refused ones included."""
    return _owners(configurable, shell_wide=False)[-1]


def _owners(configurable: Configurable, *, shell_wide: bool = True) -> list[Any]:
    """Every configurable whose Config may hold ``configurable``'s settings: its parents and the shell's others.

    ``%config`` merges into each configurable of the shell, and a refused value (bytes for the key, say) never
    reaches the refusing one's own Config but stays in all the others.
    """
    owners: list[Any] = [configurable]
    while getattr(owners[-1], "parent", None) is not None:
        owners.append(owners[-1].parent)
    return owners + list(getattr(owners[-1], "configurables", ()) if shell_wide else ())


def _sections(configurable: Configurable) -> Iterator[dict[str, Any]]:
    for owner in _owners(configurable):
        section = owner.config.get(type(configurable).__name__)
        if section is not None:
            yield section


def scrub_config(client: Any) -> None:
    """Replace a raw key (or rate_limiter URL) left in the shell-wide Config by the masked value ``client`` holds."""
    for section in _sections(client):
        if "api_key" in section and not isinstance(section["api_key"], Secret):
            section["api_key"] = client.api_key
        if isinstance(section.get("rate_limiter"), str):
            section["rate_limiter"] = client.rate_limiter  # a redis:// URL may carry a password


class SettingsWatch:
    """The settings of some configurables, as last checked: :meth:`refused` names those added since that failed."""

    def __init__(self, *configurables: Configurable) -> None:
        self._configurables = configurables
        # What each class's section held at the last check: only what %config changed since is checked, so a value
        # that was valid (a cassette path that existed) never fails a later, unrelated cell.
        self._seen: dict[str, dict[str, Any]] = {}
        for configurable in configurables:
            self._changed(configurable)

    def refused(self) -> list[str]:
        """One line per setting given since the last check that does not exist or was refused; each is dropped
        from the shell's Config, so it is reported once and later cells run with the value in effect."""
        problems: list[str] = []
        for configurable in self._configurables:
            name = type(configurable).__name__
            traits = configurable.traits(config=True)
            for key, value in self._changed(configurable).items():
                trait = traits.get(key)
                if trait is None:
                    close = difflib.get_close_matches(key, traits, n=1)
                    hint = f"did you mean {name}.{close[0]}? " if close else ""
                    problems.append(f"{name}.{key} is not a setting ({hint}%config {name} lists them).")
                else:
                    try:
                        # The trait's own checks and the class's @validate ones, without setting anything.
                        trait._validate(configurable, deepcopy(value))
                        continue
                    except TraitError as error:  # the traits' own one-line messages, which never quote a secret
                        problems.append(str(error).splitlines()[0] if str(error) else f"{name}.{key} was refused.")
                    except Exception as error:  # anything else is named, not quoted: it could hold the value
                        problems.append(f"{name}.{key} was refused ({type(error).__name__}).")
                for section in _sections(configurable):
                    section.pop(key, None)
                self._seen[name].pop(key, None)
        return problems

    def remember(self) -> None:
        """Take the settings as they are now as checked (after the key in them was masked)."""
        for configurable in self._configurables:
            self._changed(configurable)

    def _changed(self, configurable: Configurable) -> dict[str, Any]:
        name = type(configurable).__name__
        current = _root(configurable).config.get(name) or {}
        seen = self._seen.get(name, {})
        changed = {key: value for key, value in current.items() if key not in seen or not _same(seen[key], value)}
        self._seen[name] = dict(current)
        return changed


def _same(before: Any, after: Any) -> bool:
    if before is after:
        return True
    try:
        return type(before) is type(after) and bool(before == after)
    except Exception:  # a value whose == raises or is not a bool (an array): checked again
        return False
