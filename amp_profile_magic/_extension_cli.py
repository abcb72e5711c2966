"""``amp-profile-magic enable|disable|status``: load ``%ampprofile`` in every new IPython kernel, or stop.

IPython kernels read their startup configuration from ``ipython_kernel_config.json`` (and ``.py``) in the profile
directory (``--user``), in ``{sys.prefix}/etc/ipython`` (``--sys-prefix``) and in ``/usr/local/etc/ipython`` and
``/etc/ipython``. They read no ``*.d/`` fragment directories (unlike jupyter_server), so this command merges the
extension into that one JSON file, keeping every other setting and extension in it::

    $ amp-profile-magic enable              # this user's default profile
    $ amp-profile-magic enable --sys-prefix  # every user of this environment
    $ amp-profile-magic status
    $ amp-profile-magic disable

It also shows and clears the local profile store (``$AMPLITUDE_PROFILE_STORE``, else the cache directory)::

    $ amp-profile-magic store                          # where, size, answers, oldest and newest fetch times
    $ amp-profile-magic store clear [--older-than 7d]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["config_file", "disable", "enable", "main", "status", "store_command"]

EXTENSION = "amp_profile_magic"
CONFIG_NAME = "ipython_kernel_config.json"
# IPKernelApp's own section wins over its base class's, so a list already kept in either is the one to edit.
SECTIONS = ("IPKernelApp", "InteractiveShellApp")
SCOPES = ("user", "sys-prefix")


class ConfigFileError(Exception):
    """A config file this command must not touch: unreadable, not JSON, or not the expected shape."""


def config_file(scope: str) -> Path:
    """The kernel config file for ``scope``: ``user`` (the default profile) or ``sys-prefix``."""
    if scope == "user":
        from IPython.paths import get_ipython_dir

        return Path(get_ipython_dir()) / "profile_default" / CONFIG_NAME
    if scope == "sys-prefix":
        return Path(sys.prefix) / "etc" / "ipython" / CONFIG_NAME
    raise ValueError(f"unknown scope {scope!r}; expected one of {', '.join(SCOPES)}")


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise ConfigFileError(f"cannot read {path}: {error.strerror or error}") from error
    except UnicodeDecodeError:
        raise ConfigFileError(f"{path} is not UTF-8 text, so not a JSON config; fix or remove it first") from None
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except RecursionError:
        raise ConfigFileError(f"{path} nests too deeply to be a config; fix or remove it first") from None
    except ValueError as error:
        raise ConfigFileError(f"{path} is not valid JSON ({error}); fix or remove it first") from error
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path} does not hold a JSON object; fix or remove it first")
    for section in SECTIONS:
        value = data.get(section)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ConfigFileError(f"{path}: {section} is not a JSON object")
        extensions = value.get("extensions")
        if "extensions" in value and extensions is None:
            value["extensions"] = []  # null lists nothing: read (and, if enabling, written) as an empty list
            continue
        if extensions is not None and not (
            isinstance(extensions, list) and all(isinstance(item, str) for item in extensions)
        ):
            raise ConfigFileError(f"{path}: {section}.extensions is not a list of module names")
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename: an interrupted write never leaves a half-written config.
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent, text=True)
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2)
            stream.write("\n")
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o777)
        else:
            os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as error:
        raise ConfigFileError(f"cannot write {path}: {error.strerror or error}") from error


def _listed(data: dict[str, Any]) -> bool:
    return any(EXTENSION in (data.get(section) or {}).get("extensions", ()) for section in SECTIONS)


def enable(path: Path) -> bool:
    """Add the extension to ``path``'s kernel extensions list; return whether the file changed."""
    data = _read(path)
    if _listed(data):
        return False
    section = next((name for name in SECTIONS if "extensions" in (data.get(name) or {})), SECTIONS[0])
    data.setdefault(section, {}).setdefault("extensions", []).append(EXTENSION)
    _write(path, data)
    return True


def disable(path: Path) -> bool:
    """Remove the extension from ``path``'s kernel extensions lists; return whether the file changed."""
    data = _read(path)
    if not _listed(data):
        return False
    for name in SECTIONS:
        section = data.get(name)
        if not section or "extensions" not in section:
            continue
        section["extensions"] = [item for item in section["extensions"] if item != EXTENSION]
        # Leave nothing of ours behind, but an empty list someone else wrote stays theirs to keep.
        if not section["extensions"]:
            del section["extensions"]
            if not section:
                del data[name]
    if data:
        _write(path, data)
    else:
        path.unlink()
    return True


@dataclass(frozen=True)
class Effective:
    """What a new kernel will do: load the extension or not, and which file decided."""

    enabled: bool
    decided_by: Path | None
    python_files: tuple[Path, ...]


def _load_order() -> list[Path]:
    """Kernel config directories, lowest priority first, as IPKernelApp reads them."""
    from IPython.core.application import ENV_CONFIG_DIRS, SYSTEM_CONFIG_DIRS

    highest_first = [config_file("user").parent, *map(Path, ENV_CONFIG_DIRS), *map(Path, SYSTEM_CONFIG_DIRS)]
    return list(reversed(highest_first))


def effective() -> Effective:
    """Whether new kernels load the extension, judged from the JSON config files in IPython's order.

    ``.py`` config files that mention extensions are listed: they run code, so they are reported, not evaluated.
    """
    found: dict[str, tuple[list[str], Path]] = {}
    python_files: list[Path] = []
    for base in ("ipython_config", "ipython_kernel_config"):
        for directory in _load_order():
            script = directory / f"{base}.py"
            try:
                if "extensions" in script.read_text(encoding="utf-8", errors="replace"):
                    python_files.append(script)
            except OSError:
                pass
            path = directory / f"{base}.json"
            try:
                data = _read(path)
            except ConfigFileError:
                continue
            for section in SECTIONS:
                extensions = (data.get(section) or {}).get("extensions")
                if extensions is not None:
                    found[section] = (extensions, path)
    for section in SECTIONS:
        if section in found:
            extensions, path = found[section]
            return Effective(EXTENSION in extensions, path, tuple(python_files))
    return Effective(False, None, tuple(python_files))


def _report_effective(out: Any) -> Effective:
    state = effective()
    where = f" (decided by {state.decided_by})" if state.decided_by else ""
    print(f"New IPython kernels load {EXTENSION}: {'yes' if state.enabled else 'no'}{where}", file=out)
    for script in state.python_files:
        print(f"note: {script} mentions extensions and may change this when it runs", file=out)
    return state


def status(out: Any = None) -> int:
    """Print each scope's file and state, and what a new kernel will do; return 0."""
    out = out or sys.stdout
    for scope in SCOPES:
        path = config_file(scope)
        try:
            state = "enabled" if _listed(_read(path)) else ("not enabled" if path.exists() else "no file")
        except ConfigFileError as error:
            state = f"unreadable: {error}"
        print(f"{scope:<11} {path}: {state}", file=out)
    _report_effective(out)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amp-profile-magic",
        description="Load the %ampprofile magics in every new IPython kernel (no %load_ext needed), or stop; show "
        "or clear the local profile store.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{enable,disable,status,store}")
    for name, text in (
        ("enable", "add amp_profile_magic to the kernels' extensions"),
        ("disable", "remove amp_profile_magic from the kernels' extensions"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        scope = command.add_mutually_exclusive_group()
        scope.add_argument(
            "--user",
            dest="scope",
            action="store_const",
            const="user",
            help="this user's default IPython profile (the default)",
        )
        scope.add_argument(
            "--sys-prefix",
            dest="scope",
            action="store_const",
            const="sys-prefix",
            help=f"every user of this Python environment ({Path(sys.prefix) / 'etc' / 'ipython'})",
        )
        command.set_defaults(scope="user")
    commands.add_parser("status", help="show where the extension is enabled and whether new kernels load it")
    store = commands.add_parser(
        "store",
        help="show or clear the local profile store",
        description="Show or clear the local profile store ($AMPLITUDE_PROFILE_STORE, else the user cache directory).",
    )
    store.add_argument("action", nargs="?", choices=("info", "clear"), default="info")
    store.add_argument("--older-than", metavar="AGE", help="with clear: only answers older than AGE (7d, 12h, 30m)")
    store.add_argument("--path", metavar="DIR", help="the store's directory (default: as the kernels find it)")
    return parser


def store_command(action: str, *, older_than: str | None, path: str | None) -> int:
    """``amp-profile-magic store [info|clear]``: the same as ``%ampprofile_store``, from a shell."""
    from ._store import StoreUnavailable, clear_store, parse_age, store_directory, store_info

    if path is not None and not path.strip():
        # Not "the default": with $AMPLITUDE_PROFILE_STORE set, an empty --path cleared another store than the
        # kernels use.
        print("amp-profile-magic: --path is empty: give the store's directory, or leave --path out.", file=sys.stderr)
        return 2
    setting = path if path is not None else os.getenv("AMPLITUDE_PROFILE_STORE", "")
    directory = store_directory(setting)
    if directory is None:
        given = "--path" if path is not None else "AMPLITUDE_PROFILE_STORE"
        print(f"The local profile store is off ({given}={setting}).")
        return 1 if action == "info" else 0  # info: a script can tell a store that is there from one that is off
    if action == "info":
        if older_than is not None:
            print("amp-profile-magic: --older-than goes with clear.", file=sys.stderr)
            return 2
        info = store_info(directory)
        print(info.describe())
        return 0 if info.disabled is None else 1  # a script can tell a store that is there from one that is off
    try:
        age = None if older_than is None else parse_age(older_than)
        print(clear_store(directory, older_than=age))
    except (ValueError, StoreUnavailable) as error:
        print(f"amp-profile-magic: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    given = list(sys.argv[1:] if argv is None else argv)
    # argparse reads "-1d" after --older-than as an option of its own ("expected one argument"): joined with =,
    # the value reaches parse_age, which says what is wrong with it.
    for index in range(len(given) - 1):
        if given[index] == "--older-than" and given[index + 1].startswith("-"):
            given[index : index + 2] = [f"--older-than={given[index + 1]}"]
            break
    arguments = _parser().parse_args(given)
    if arguments.command == "status":
        return status()
    if arguments.command == "store":
        return store_command(arguments.action, older_than=arguments.older_than, path=arguments.path)
    path = config_file(arguments.scope)
    try:
        changed = enable(path) if arguments.command == "enable" else disable(path)
    except ConfigFileError as error:
        print(f"amp-profile-magic: {error}. Nothing was changed.", file=sys.stderr)
        return 1
    verb = "Enabled" if arguments.command == "enable" else "Disabled"
    if changed:
        print(f"{verb} {EXTENSION} in {path}.")
    else:
        print(f"{EXTENSION} was already {verb.lower()} in {path}; nothing changed.")
    state = _report_effective(sys.stdout)
    if state.decided_by is not None and state.enabled != (arguments.command == "enable"):
        print(
            f"warning: {state.decided_by} takes precedence over {path}; edit it or use the other scope.",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
