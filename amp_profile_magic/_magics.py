"""``%ampprofile``, ``%%ampprofile`` and ``%ampprofile_emulator``: the IPython face of the client."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, cast

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, needs_local_scope, no_var_expand
from traitlets import Bool, Instance

from amp_profile_magic import _invoke
from amp_profile_magic._client import ProfileClient
from amp_profile_magic._config_guard import SettingsWatch, scrub_config
from amp_profile_magic._gcpause import paused
from amp_profile_magic._grammar import parse_body, zip_identities
from amp_profile_magic._traits import Int
from amp_profile_magic._words import strip_comment

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from amp_profile_magic._form import ProfileForm
    from amp_profile_magic.emulator import Emulator

__all__ = ["AmpProfileMagics", "load", "profile_form", "unload"]


@magics_class
class AmpProfileMagics(Magics):
    """Magics that look up Amplitude user profiles and return pandas DataFrames."""

    raise_errors = Bool(
        True,
        help="End the cell in error when a lookup fails, so Run All, nbclient, nbval and papermill stop. "
        "False only shows the error panel (handy while exploring).",
    ).tag(config=True)

    progress = Bool(True, help="Show a progress bar for batches of more than one user.").tag(config=True)

    display_max_rows = Int(
        20, min=1, help="Rows shown per table when a several-section result is displayed (like pandas' max_rows)."
    ).tag(config=True)

    emulator_seed = Int(0, help="Seed of the bundled emulator's synthetic data (%ampprofile_emulator).").tag(
        config=True
    )

    client = Instance(ProfileClient, help="The client every lookup of this kernel goes through.")

    def __init__(self, shell: InteractiveShell | None = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.client = ProfileClient(parent=self)
        self._emulator: Emulator | None = None
        self._before_emulator: tuple[str, Any] | None = None
        self.after_cell_hook: Any = None
        self._settings = SettingsWatch(self.client, self)

    # -- magics -------------------------------------------------------------------------------------------------

    @line_cell_magic
    @needs_local_scope
    @no_var_expand  # the magic expands {expr} and $name itself, after splitting the line (see _words)
    def ampprofile(self, line: str, cell: str | None = None, local_ns: dict[str, Any] | None = None) -> Any:
        """Look up Amplitude user profiles and get DataFrames back.

        Usage::

          %ampprofile user=ID [device=ID] SECTION... [-o NAME]
          %ampprofile --users VARIABLE [--devices VARIABLE] SECTION... [-o NAME]
          %%ampprofile SECTION... [-o NAME]       (cell body: one id per line)

        Sections (ask for one or several; the lines below come from the installed sections):

        Section plugins installed through the ``amp_profile_magic.sections`` entry point add keywords of
        their own, listed above too; ``%ampprofile --sections`` names each section's plugin.

        Who:

          user=ID / device=ID    one profile (either or both)
          --users VARIABLE       a batch: ids from a list, tuple, pandas Series/Index or array in your namespace
                                 (any expression: --users df.user_id, or quoted: --users "df['user id']");
                                 --devices pairs device ids position by position. Batches run concurrently,
                                 paced under ProfileClient.requests_per_minute.
          -o NAME, --out NAME    bind the result to NAME and show a one-line summary instead of the table

        The local store (on by default; ``%ampprofile_store`` shows it) keeps every answer, so re-running a cell,
        or a batch cut short by an interrupt, a crash or a kernel restart, sends only what is missing:

          --refresh              ignore stored answers and fetch again (what comes back is stored)
          --store-only           answer only from the store and send nothing; missing users fail as not_stored
          --dry-run              send nothing: print how many requests the cell would send after the store,
                                 how long that takes at the configured rate, and the first request as curl

        Results: one section gives a DataFrame; several give a mapping of section name to DataFrame (``res.recs``).
        Every frame has ``user_id`` and ``device_id`` columns. A batch never drops a user: failures are in
        ``df.attrs["failures"]`` (one section) or ``res.failures`` (several), with a one-line summary inline; an
        answer that is not the documented JSON fails only its user, and its record's ``field`` names the value.
        An interrupted batch ends the cell in error but keeps what it fetched, in the ``-o`` name or else in
        ``_ampprofile_partial``.
        One request per user whatever the sections, except ``props`` with ``comps``: the API merges both into
        one dict, so those cost two.

        Tab completes keywords, the choices of ``rec_type=`` and ``propensity_type=``, and variables after
        ``--users``.

        Values and variables (ids are sent exactly as written, or exactly as a variable holds them):

          user={expr}            {…} is a Python expression from your namespace, $name a variable (a name only:
          user=$uid              $a.b is a's value then ".b"). Each gives exactly one id or value: its text is
                                 never split on spaces or commas, nor stripped. Text around it is kept:
                                 user=u-{n}. An undefined name is a UsageError naming it.
          $$  {{  }}             a literal $, { or }; any other unquoted $ or } is refused
          user='john smith'      '…' and "…" quote literally: nothing inside is expanded. Inside, the quote
          user="o'brien"         itself is doubled: 'it''s'. A quote goes around a whole value (or a whole id of
          recs='a b',c           a list), so o'brien or "say "hi"" unquoted are refused. Backslashes are ordinary.
          user='1,2'             user=/device= take one id: an unquoted comma is refused (several users: --users),
                                 a quoted one is part of the id. In recs=/comps=/propensity= lists, commas
                                 separate ids, and an id holding a comma (quoted or from a variable) is refused.
          user='  ab  '          spaces in a user or device id are sent as they are; around an id of a list
                                 (recs=' a') they are refused. An empty or all-space id is refused everywhere.
          %%ampprofile body      the same quoting, but no expansion: quote an id holding $, { or }. A bare word is
                                 a user id; a word starting with # starts a comment.
          props  # why           on the magic's line too, an unquoted word starting with # ends it: a comment

        --users/--devices ids: str as is; integers (numpy's and nullable Int64 too) as digits; whole floats below
        2**53 (2**24 for float32) as the integer. Missing values (None/NaN/NA), blank strings and larger floats are
        refused naming the position.

        Errors show as a short panel and end the cell in error (``%config AmpProfileMagics.raise_errors = False``
        only shows them).

        Examples::

          In [1]: %load_ext amp_profile_magic
          In [2]: %ampprofile_emulator            # bundled offline emulator; or set AMPLITUDE_SECRET_KEY
          In [3]: %ampprofile user=12345 recs=testRecId,testRecId2
          In [4]: %ampprofile user=12345 props cohorts comps propensity=0x10x -o profile
          In [5]: uid = "12345"
          In [6]: %ampprofile user={uid} cohorts         # or user=$uid; a value with spaces stays one id
          In [7]: ids = ["user-00001", "user-00002", "nobody"]
          In [8]: %ampprofile --users ids propensity=0x10x,0x11x propensity_type=pct -o scores

          In [9]: %%ampprofile recs=testRecId -o recs
             ...: 12345
             ...: device=ffff-ffff-ffff-ffff
             ...: # comments and blank lines are skipped

        Settings: ``%config ProfileClient`` (endpoint, key, timeout, retries, pacing, store, max_age) and
        ``%config AmpProfileMagics``; also ``ipython_config.py`` and the AMPLITUDE_SECRET_KEY and
        AMPLITUDE_PROFILE_URL environment variables. Pacing counts requests_per_minute against one budget
        shared by every kernel of this user on this machine (ProfileClient.rate_limiter or
        AMPLITUDE_PROFILE_RATE_LIMITER: kernel, sqlite:///PATH or redis://HOST:PORT/DB), and paces down when
        throttled ("paced down to 240/min after 3 throttles" in the summary). A shared budget that cannot be
        reached never fails a batch: the kernel paces alone at half the rate, and the summary says "budget: kernel
        fallback at 300/min (redis unreachable)". Retries are counted in the summary ("186 retries (4 throttled)"),
        not printed one by one.
        """
        # The whole call is paused (see _gcpause): when _ampprofile returns, the batch is gone before the collector
        # runs again. Its network part is not paused (ProfileClient.lookup_many resumes it there).
        with paused():
            return self._ampprofile(line, cell, local_ns)

    def _ampprofile(self, line: str, cell: str | None, local_ns: dict[str, Any] | None) -> Any:
        if cell is not None:
            # %%ampprofile: sections on the first line (expanded like %ampprofile's), one id per line in the body.
            invocation = _invoke.parse(self, line, cell=True, local_ns=local_ns, magic="%%ampprofile")
            identities = _invoke.checked(lambda: parse_body(cell), magic="%%ampprofile")
            return _invoke.run(self, invocation, identities, single=False)
        words = strip_comment(line).split()
        if words == ["--sections"]:
            return self._list_sections()
        if _asks_help(words):
            print(magic_help())
            return None
        if "--sections" in words:
            raise UsageError("%ampprofile: --sections lists the installed sections and takes nothing else")
        invocation = _invoke.parse(self, line, local_ns=local_ns)
        if invocation.identity is not None:
            return _invoke.run(self, invocation, [invocation.identity], single=True)
        users = _invoke.ids_from(self, "--users", invocation.users_expr, local_ns)
        devices = _invoke.ids_from(self, "--devices", invocation.devices_expr, local_ns)
        identities = _invoke.checked(lambda: zip_identities(users, devices))
        return _invoke.run(self, invocation, identities, single=False)

    @line_magic
    def ampprofile_emulator(self, line: str) -> None:
        """Switch this kernel to the bundled offline emulator (or back with ``--stop``).

        Starts the emulator on 127.0.0.1 with seeded synthetic data and the documented examples (user 12345,
        device ffff-ffff-ffff-ffff), and points ``ProfileClient`` at it with its own key: no secret key and no
        network needed, so demos and CI run offline and reproducibly::

          In [1]: %ampprofile_emulator
          In [2]: %ampprofile user=12345 cohorts
          In [3]: %ampprofile_emulator --stop      # back to the previous endpoint and key
        """
        argument = strip_comment(line)
        if argument == "--stop":
            if self._emulator is None:
                print("The bundled emulator is not running; ProfileClient is unchanged.")
                return
            self.stop_emulator()
            print("Stopped the bundled emulator; ProfileClient is back to its previous endpoint and key.")
            return
        if _asks_help(argument.split()):
            print(inspect.getdoc(AmpProfileMagics.ampprofile_emulator))
            return
        if argument:
            raise UsageError(f"%ampprofile_emulator: unknown argument {argument!r} (only --stop)")
        emulator = self.start_emulator()
        seed = emulator.dataset.seed  # the running one's: a seed set since takes effect at the next start
        print(
            f"Using the bundled emulator (seed {seed}, {len(emulator.dataset.user_ids)} synthetic "
            "users plus the documented examples); no secret key needed. %ampprofile_emulator --stop switches back."
        )
        if seed != self.emulator_seed:
            print(
                f"It was already running: AmpProfileMagics.emulator_seed = {self.emulator_seed} applies after "
                "%ampprofile_emulator --stop and %ampprofile_emulator again."
            )

    @line_magic
    def ampprofile_cassette(self, line: str) -> None:
        """Record this notebook's API responses to a cassette file, or replay them offline without the key.

        With just a path, the cassette is replayed (no network, no secret key), unless the environment variable
        AMPLITUDE_PROFILE_CASSETTE_MODE says ``record`` or ``off``: so a notebook written against the real API
        records once on the author's machine and replays in CI. Cassettes hold responses only, never the key::

          In [1]: %ampprofile_cassette churn.cassette.json          # replay (or what the variable says)
          In [2]: %ampprofile_cassette record churn.cassette.json   # record, whatever the variable says
          In [3]: %ampprofile_cassette off                          # talk to the API again
          In [4]: %ampprofile_cassette                              # show the current mode and file
        """
        import os
        import shlex

        try:
            words = shlex.split(strip_comment(line))
        except ValueError as error:
            raise UsageError(f"%ampprofile_cassette: {error}") from None
        client = self.client
        if not words:
            mode = client.cassette_mode
            problem = client._cassette_mode_problem
            if problem is not None:
                print(f"Cassette: none, and lookups fail: {problem} Fix it, or choose: %ampprofile_cassette off")
                return
            print(f"Cassette: {mode}" + (f" ({client.cassette})" if mode != "off" and client.cassette else ""))
            return
        if words[0] in HELP_FLAGS:
            print(inspect.getdoc(AmpProfileMagics.ampprofile_cassette))
            return
        if words in (["record"], ["replay"]):
            raise UsageError(f"%ampprofile_cassette: {words[0]} needs the cassette's path: {words[0]} PATH")
        if words in (["off"], ["--off"]):
            client.cassette_mode = "off"
            print("Cassette off: lookups go to ProfileClient.endpoint.")
            return
        if len(words) == 2 and words[0] in ("record", "replay"):
            mode, path = words
        elif len(words) == 1:
            path = words[0]
            mode = os.getenv("AMPLITUDE_PROFILE_CASSETTE_MODE", "").strip().lower() or "replay"
            if mode not in ("off", "record", "replay"):
                raise UsageError(
                    f"%ampprofile_cassette: AMPLITUDE_PROFILE_CASSETTE_MODE={mode!r} is not off|record|replay"
                )
        else:
            raise UsageError("%ampprofile_cassette: expected [record|replay] PATH, or off")
        resolved = os.path.abspath(os.path.expanduser(path))  # absolute, so a later %cd does not move it
        if mode == "replay" and not os.path.isfile(resolved):
            # The full path: under papermill (no --cwd) a relative one starts from wherever papermill was run.
            where = (
                ""
                if os.path.isabs(os.path.expanduser(path))
                else " (a relative path starts from the working directory)"
            )
            raise UsageError(
                f"%ampprofile_cassette: no cassette {path!r} to replay: {resolved} does not exist{where}; record it "
                f"first with %ampprofile_cassette record {path} (or AMPLITUDE_PROFILE_CASSETTE_MODE=record)"
            )
        client.cassette = resolved
        client.cassette_mode = mode
        messages = {
            "replay": f"Replaying API responses from {path}: no network and no secret key needed.",
            "record": f"Recording API responses to {path} (responses only, never the key).",
            "off": f"Cassette {path} not used (AMPLITUDE_PROFILE_CASSETTE_MODE=off): lookups go to the API.",
        }
        print(messages[mode])

    @line_magic
    def ampprofile_store(self, line: str) -> None:
        """Show or clear the local profile store, which keeps every API answer for re-runs and resumed batches.

        The store is a SQLite file in your cache directory (``ProfileClient.store`` or AMPLITUDE_PROFILE_STORE
        move it; ``off`` disables it). It holds personal data: the profiles you looked up. Stored answers are
        reused for ``ProfileClient.max_age`` seconds (one day by default)::

          In [1]: %ampprofile_store                      # where it is, its size, its answers, oldest and newest
          In [2]: %ampprofile_store clear                # delete every stored answer
          In [3]: %ampprofile_store clear --older-than 7d   # only those fetched more than 7 days ago (d, h, m, s)

        The same from a shell: ``amp-profile-magic store [info | clear [--older-than 7d]]``.
        """
        import shlex

        from amp_profile_magic._store import StoreUnavailable, parse_age

        try:
            words = shlex.split(strip_comment(line))
        except ValueError as error:
            raise UsageError(f"%ampprofile_store: {error}") from None
        if words in ([], ["info"]):
            print(self.client.store_info())
            return
        if words[0] in (*HELP_FLAGS, "help"):
            print(inspect.getdoc(AmpProfileMagics.ampprofile_store))
            return
        if words[0] == "info":
            raise UsageError(
                f"%ampprofile_store: info takes nothing more ({' '.join(words[1:])}); --older-than goes with clear"
            )
        if words[0] != "clear":
            raise UsageError(f"%ampprofile_store: unknown command {words[0]!r} (info, or clear [--older-than AGE])")
        older_than = None
        rest = words[1:]
        if rest:
            if rest[0].startswith("--older-than="):
                rest = ["--older-than", rest[0].partition("=")[2], *rest[1:]]
            if rest[0] != "--older-than" or len(rest) != 2:
                raise UsageError("%ampprofile_store: expected clear [--older-than AGE], e.g. clear --older-than 7d")
            try:
                older_than = parse_age(rest[1])
            except ValueError as error:
                raise UsageError(f"%ampprofile_store: --older-than {error}") from None
        try:
            print(self.client.clear_store(older_than=older_than))
        except StoreUnavailable as error:
            raise UsageError(f"%ampprofile_store: {error}") from None

    @line_magic
    @no_var_expand  # the form's arguments follow %ampprofile's expansion rules, applied by _invoke.parse
    def ampprofile_form(self, line: str) -> ProfileForm | None:
        """Explore a profile with a form: pick who and which sections, press Fetch, see the tables.

        The controls come from the installed section plugins. Under them is the ``%ampprofile`` line the form
        runs, ready to paste into a cell; an incomplete selection shows the grammar's error and disables Fetch.
        Where widgets do not render (a terminal IPython, nbconvert HTML) the form shows as text: what it needs
        and the equivalent ``%ampprofile`` line (or cell).

        Batches: switch who from "one id" to "pasted ids" (one id per line, sent exactly as written; the form
        shows the equivalent ``%%ampprofile`` cell) or "variable" (a list, tuple, Series, Index or array of your
        namespace, read like ``--users NAME``; the form shows that line). A progress bar counts the lookups with
        the magic's note (retries, throttle holds, pacing); at the end come the magic's summary line, the bound
        variable and the failures table. Stop ends the batch like Ctrl-C: what finished is kept, in the ``-o``
        name or ``_ampprofile_partial``.

        Arguments, if any, prefill the form (same grammar as ``%ampprofile``: one user or device, or
        ``--users NAME`` / ``--devices NAME`` for a variable of ids)::

          In [1]: %ampprofile_emulator
          In [2]: %ampprofile_form
          In [3]: %ampprofile_form user=12345 recs=testRecId -o recs
          In [4]: ids = ["12345", "user-00001"]
          In [5]: %ampprofile_form --users ids props -o profiles
        """
        from amp_profile_magic._form import ProfileForm

        if _asks_help(strip_comment(line).split()):
            print(inspect.getdoc(AmpProfileMagics.ampprofile_form))
            return None
        return ProfileForm(self, line=line)

    # -- Python API (the form uses these) -----------------------------------------------------------------------

    def start_emulator(self) -> Emulator:
        """Start the bundled emulator (once per kernel) and point the client at it."""
        if self._emulator is None:
            from amp_profile_magic.emulator import Emulator

            self._emulator = Emulator(seed=self.emulator_seed).start()
            self._before_emulator = (self.client.endpoint, self.client.api_key)
        self.client.endpoint = self._emulator.url
        self.client.api_key = self._emulator.api_key
        return self._emulator

    def stop_emulator(self) -> None:
        """Stop the bundled emulator, if running, and restore the client's previous endpoint and key."""
        if self._emulator is not None:
            self._emulator.stop()
            self._emulator = None
        if self._before_emulator is not None:
            self.client.endpoint, self.client.api_key = self._before_emulator
            self._before_emulator = None

    def after_cell(self, result: Any) -> None:
        """``post_run_cell`` hook: keep a key set with ``%config`` out of the shell's shared Config, and fail the
        cell for a setting ``%config`` could not apply (IPython's ``%config`` only logs it)."""
        # Checked before the key is masked: a refused key (bytes, say) would be replaced by the one in effect.
        refused = self._settings.refused()
        scrub_config(self.client)
        self._settings.remember()  # holding the masked key, not the raw one, until the next cell
        if not refused or self.shell is None:
            return
        error = UsageError(" ".join(refused))
        self.shell.show_usage_error(error)
        if self.raise_errors and result is not None and result.success:
            result.error_in_exec = error

    # -- internals ----------------------------------------------------------------------------------------------

    def _list_sections(self) -> None:
        from amp_profile_magic.sections import available_sections

        for section in available_sections().values():
            print(f"{section.name}  ({type(section).__module__}.{type(section).__name__})")
            for usage in section.usage:
                print(f"    {usage}")


#: What asks a magic for its help (``%ampprofile?`` works for each too).
HELP_FLAGS = ("-h", "--help")


def _asks_help(words: list[str]) -> bool:
    return len(words) == 1 and words[0] in HELP_FLAGS


#: The line of ``%ampprofile``'s docstring under which ``%ampprofile?`` lists the installed sections' usage lines.
SECTIONS_HEADING = "Sections (ask for one or several; the lines below come from the installed sections):"


def magic_help() -> str:
    """``%ampprofile?``: the magic's docstring with every installed section's usage lines under its heading."""
    from amp_profile_magic.sections import available_sections

    doc = AmpProfileMagics.ampprofile.__doc__ or ""
    lines = "".join(f"          {line}\n" for section in available_sections().values() for line in section.usage)
    return doc.replace(SECTIONS_HEADING + "\n\n", SECTIONS_HEADING + "\n\n" + lines + "\n", 1)


# IPython's ? calls an object's getdoc() when it has one; a bound method finds it on its function. (Any: IPython 9
# ships types, in which the decorated method is a union of callables with no such attribute.)
cast(Any, AmpProfileMagics.ampprofile).getdoc = magic_help


def load(shell: Any) -> None:
    """Register the magics and their configurables on ``shell`` (idempotent)."""
    if any(isinstance(item, AmpProfileMagics) for item in shell.configurables):
        return
    magics = AmpProfileMagics(shell=shell)
    shell.register_magics(magics)
    # Magics.__init__ already appended the magics to shell.configurables; %config finds the client there too.
    shell.configurables.append(magics.client)
    # Keep the very object registered: IPython wraps callbacks and unregisters by identity.
    magics.after_cell_hook = magics.after_cell
    shell.events.register("post_run_cell", magics.after_cell_hook)
    completer = getattr(shell, "Completer", None)
    if completer is not None:
        from amp_profile_magic._completer import matcher_for

        completer.custom_matchers.append(matcher_for(shell))


def unload(shell: Any) -> None:
    """Remove the magics and configurables that :func:`load` registered, stopping the emulator if running."""
    for magics in dict.fromkeys(item for item in shell.configurables if isinstance(item, AmpProfileMagics)):
        magics.stop_emulator()
        magics.client.close()
        if magics.after_cell_hook is not None:
            shell.events.unregister("post_run_cell", magics.after_cell_hook)
        shell.configurables[:] = [item for item in shell.configurables if item not in (magics, magics.client)]
    completer = getattr(shell, "Completer", None)
    if completer is not None:
        from amp_profile_magic._completer import MATCHER_ID

        completer.custom_matchers[:] = [
            matcher
            for matcher in completer.custom_matchers
            if getattr(matcher, "matcher_identifier", None) != MATCHER_ID
        ]
    manager = shell.magics_manager
    for kind, names in (
        ("line", ("ampprofile", "ampprofile_emulator", "ampprofile_cassette", "ampprofile_form", "ampprofile_store")),
        ("cell", ("ampprofile",)),
    ):
        for name in names:
            manager.magics[kind].pop(name, None)
    manager.registry.pop("AmpProfileMagics", None)


def profile_form(line: str = "", *, shell: InteractiveShell | None = None) -> ProfileForm:
    """The ``%ampprofile_form`` form, from Python: ``profile_form("user=12345 recs=testRecId")``.

    Uses the running IPython kernel (loading the extension if needed), so the form shares its client and
    settings with ``%ampprofile``.
    """
    from amp_profile_magic._form import ProfileForm

    if shell is None:
        from IPython.core.getipython import get_ipython

        shell = get_ipython()
        if shell is None:
            raise RuntimeError("profile_form() needs IPython or a Jupyter kernel; run it in a notebook")
    if shell.extension_manager is not None:
        # Through the extension manager, so a later %load_ext / %unload_ext knows the extension is loaded.
        shell.extension_manager.load_extension("amp_profile_magic")
    else:
        load(shell)
    # IPython annotates configurables as a list of shells; it holds every Configurable.
    configurables: list[Any] = shell.configurables
    return ProfileForm(next(item for item in configurables if isinstance(item, AmpProfileMagics)), line=line)
