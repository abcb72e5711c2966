"""The form's batches: ids pasted one per line or a variable that holds ids, a progress bar, Stop and the summary.

:class:`ProfileForm` composes a :class:`BatchPanel`. The panel reads its ids with the magic's own parsers: pasted
ids become a ``%%ampprofile`` cell body read back by :func:`~._grammar.parse_body`, and a variable becomes
``--users NAME`` read by :func:`~._invoke.ids_from`, so the cell or line the form shows sends what the form sent.
A batch runs through :func:`~._invoke.fetch` with a progress callback and a stop event, exactly as the magic's
does; a stopped batch keeps what finished, bound like the magic's interrupted batch.
"""

from __future__ import annotations

import html
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from amp_profile_magic import _invoke
from amp_profile_magic._grammar import GrammarError, Identity, Invocation, parse_body, parse_line, zip_identities
from amp_profile_magic._words import quote

if TYPE_CHECKING:
    import ipywidgets as widgets

__all__ = ["MODES", "STOPPING_LABEL", "STOP_LABEL", "BatchPanel", "BatchRun", "Parsed", "id_variables"]

#: The "who" switch: one id (the form's id box), ids pasted one per line, or a variable of the namespace.
MODES = (("one id", "one"), ("pasted ids", "paste"), ("variable", "variable"))
STOP_LABEL = "Stop"
STOPPING_LABEL = "Stopping…"
#: Progress redraws at most this often (seconds): each redraw is a message to the browser, and a batch can be 50,000.
REDRAW_EVERY = 0.1


def _is_ids_container(value: object) -> bool:
    """Whether ``value`` is a list, tuple, pandas Series or Index, or 1-D numpy array (what ``--users`` takes)."""
    if isinstance(value, list | tuple):
        return True
    # Only ever the user's pandas or numpy: neither is imported here just to look.
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, pandas.Series | pandas.Index):
        return True
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.ndarray) and value.ndim == 1


def id_variables(namespace: Mapping[str, Any], hidden: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """``(label, name)`` of the namespace's variables that can hold ids, sorted by name: ``("ids (list, 3)", "ids")``.

    Names starting with ``_`` and IPython's own (``In``, ``Out``… in ``hidden``, as ``%who`` skips them) are left out.
    """
    hidden = hidden or {}
    missing = object()
    found = []
    for name, value in namespace.items():
        if name.startswith("_") or hidden.get(name, missing) is value or not _is_ids_container(value):
            continue
        found.append((f"{name} ({type(value).__name__}, {len(value):,})", name))
    return sorted(found, key=lambda item: item[1].lower())


def _output(data: dict[str, Any], metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"output_type": "display_data", "data": data, "metadata": metadata or {}}


@dataclass(frozen=True, slots=True, kw_only=True)
class Parsed:
    """A valid batch selection: the invocation, its identities, the equivalent cell or line, and a short note."""

    invocation: Invocation
    identities: list[Identity]
    source: str
    note: str


class BatchRun:
    """One running batch: the progress bar's callback and the stop event handed to :func:`~._invoke.fetch`."""

    def __init__(self, panel: BatchPanel, *, users: int) -> None:
        self.panel = panel
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.users = users
        self._shown = 0.0
        self._last: tuple[int, int, str] = (0, max(users, 1), "")

    def on_progress(self, finished: int, total: int, note: str) -> None:
        """``(finished, total, note)`` from the batch: redraw, at most every :data:`REDRAW_EVERY` seconds."""
        changed_note = note != self._last[2]
        self._last = (finished, total, note)
        now = time.monotonic()
        # A note (a throttle hold starting, retries) or the end is drawn at once; plain steps are rate-limited.
        if changed_note or finished >= total or now - self._shown >= REDRAW_EVERY:
            self._shown = now
            self.panel.draw(finished, total, note, stopping=self.stop.is_set())

    def request_stop(self) -> None:
        """End the batch like Ctrl-C: what finished is kept."""
        self.stop.set()
        finished, total, note = self._last
        self.panel.draw(finished, total, note, stopping=True)

    def finish(self, fetched: _invoke.Fetched | None) -> None:
        """Draw the final state: the whole bar, or how far a stopped batch got; ``None`` when the batch failed."""
        finished, total, note = self._last
        took = f"{time.monotonic() - self.started:.1f} s"
        # The last note stays (retries, pacing), as in the summary line below.
        note = f" · {note}" if note else ""
        if fetched is None:
            self.panel.draw(finished, total, f"failed after {took}{note}", style="danger")
            return
        batch = fetched.batch
        if batch.interrupted:
            self.panel.draw(finished, total, f"stopped after {took}{note}", style="warning")
        else:
            # Every unique lookup finished; the summary line below says how each went.
            style = "warning" if batch.failures else "success"
            self.panel.draw(total, total, f"done in {took}{note}", style=style)


class BatchPanel:
    """The form's batch controls: the who switch, the pasted ids or the variable, progress, and Stop.

    ``on_change`` is called whenever what the batch would send may have changed (a control, or the namespace
    after a cell ran), so the form refreshes its equivalent cell or line.
    """

    def __init__(
        self, host: _invoke.Host, *, single: widgets.Widget, on_change: Callable[[], None] | None = None
    ) -> None:
        import ipywidgets as widgets

        self.host = host
        self.single = single
        self.on_change = on_change
        self.run: BatchRun | None = None
        self._quiet = False
        # The last variable read: (kind, name, length), the object itself, and its ids or the complaint. Reading a
        # 100,000-id Series takes about half a second, too long to repeat per keystroke or after every cell.
        self._read: tuple[tuple[str, str, int], object, list[str] | str] | None = None
        # The last paste read: (kind, text) and its cell body and identities (50,000 lines take two seconds).
        self._body: tuple[tuple[str, str], str, list[Identity]] | None = None

        self.mode = widgets.ToggleButtons(options=MODES, value="one", style={"button_width": "auto"})
        self.mode.add_class("amp-who-mode")
        self.pasted = widgets.Textarea(
            placeholder="one id per line, sent exactly as written (blank lines are skipped)",
            rows=6,
            layout={"width": "420px"},
        )
        self.pasted.add_class("amp-pasted-ids")
        self.variable = widgets.Dropdown(options=[], value=None, description="ids in", layout={"width": "340px"})
        self.variable.add_class("amp-ids-variable")
        self.rescan = widgets.Button(icon="refresh", tooltip="look for variables again", layout={"width": "40px"})
        self.rescan.add_class("amp-rescan")
        self.stop_button = widgets.Button(
            description=STOP_LABEL, icon="stop", button_style="warning", disabled=True, tooltip="keep what finished"
        )
        self.stop_button.add_class("amp-stop")
        self.progress = widgets.IntProgress(min=0, max=1, value=0, layout={"width": "260px"})
        self.progress.add_class("amp-progress")
        self.progress_label = widgets.Label()
        self.progress_label.add_class("amp-progress-label")

        self.variable_row = widgets.HBox([self.variable, self.rescan])
        self.widget = widgets.VBox([self.pasted, self.variable_row])
        self.widget.add_class("amp-batch")
        self.progress_row = widgets.HBox([self.progress, self.progress_label])
        self.progress_row.add_class("amp-progress-row")

        self.mode.observe(self._mode_changed, names="value")
        self.pasted.observe(self._changed, names="value")
        self.variable.observe(self._changed, names="value")
        self.rescan.on_click(lambda button: self.scan())
        self.stop_button.on_click(self._stop_clicked)
        self._watch_cells()
        self._layout()

    # -- what the panel says ------------------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether the form looks up a batch (pasted ids or a variable) rather than one id."""
        return bool(self.mode.value != "one")

    def who_tokens(self, kind: str) -> list[str]:
        """The line's ``--users NAME`` (or ``--devices NAME``) for a variable; nothing for pasted ids (the body)."""
        if self.mode.value == "variable" and self.variable.value:
            return [f"--{kind}s", str(self.variable.value)]
        return []

    def parse(self, kind: str, tokens: list[str]) -> Parsed:
        """Read the batch as the magic would read its cell or line; raises :class:`GrammarError` saying what is wrong.

        ``tokens`` are the form's words (sections, ``-o``, and :meth:`who_tokens`), already quoted.
        """
        header = " ".join(tokens)
        if self.mode.value == "paste":
            return self._parse_pasted(kind, header)
        return self._parse_variable(kind, header)

    def _parse_pasted(self, kind: str, header: str) -> Parsed:
        key = (kind, self.pasted.value)
        if self._body is None or self._body[0] != key:
            ids = [line for line in self.pasted.value.splitlines() if line.strip()]
            if not ids:
                raise GrammarError(f"paste {kind} ids, one per line")
            # Each id quoted for the cell body, then read back by the cell's own parser: the cell sends what the
            # form sends.
            body = "\n".join(quote(text) if kind == "user" else f"device={quote(text)}" for text in ids)
            self._body = (key, body, parse_body(body))
        _, body, identities = self._body
        invocation = parse_line(header, cell=True)
        source = f"%%ampprofile {header}".rstrip() + f"\n{body}"
        return Parsed(
            invocation=invocation, identities=identities, source=source, note=f"{len(identities):,} {kind} ids"
        )

    def _parse_variable(self, kind: str, header: str) -> Parsed:
        name = self.variable.value
        if not name:
            if not self.variable.options:
                raise GrammarError(
                    "no variable holds ids yet: define one in a cell (ids = ['12345', ...]), or paste the ids"
                )
            raise GrammarError(f"pick the variable that holds the {kind} ids")
        invocation = parse_line(header)
        ids = self._ids(kind, str(name), invocation)
        users, devices = (ids, None) if kind == "user" else (None, ids)
        identities = zip_identities(users, devices)
        source = "%ampprofile " + header
        note = f"{len(identities):,} {kind} ids"
        return Parsed(invocation=invocation, identities=identities, source=source, note=note)

    def _ids(self, kind: str, name: str, invocation: Invocation) -> list[str]:
        """The variable's ids as ``--users NAME`` reads them; read again only when the variable changed."""
        shell = self.host.shell
        value: Any = shell.user_ns.get(name) if shell is not None else None
        key = (kind, name, len(value) if hasattr(value, "__len__") else -1)
        read = self._read
        if read is None or read[0] != key or read[1] is not value:
            option = f"--{kind}s"
            expression = invocation.users_expr if kind == "user" else invocation.devices_expr
            try:
                found: list[str] | str = _invoke.ids_from(self.host, option, expression) or []
            except UsageError as error:
                # The magic's own complaint, without its "%ampprofile: " prefix (the form shows it under its line).
                found = str(error).removeprefix("%ampprofile: ")
            self._read = read = (key, value, found)
        if isinstance(read[2], str):
            raise GrammarError(read[2])
        return read[2]

    def forget(self) -> None:
        """Read the variable again next time (Fetch does: a list changed in place keeps its object and length)."""
        self._read = None

    # -- running ----------------------------------------------------------------------------------------------------

    def start(self, users: int) -> BatchRun:
        """Show the bar at zero and enable Stop, for a batch of ``users``; the run feeds :func:`~._invoke.fetch`."""
        self.run = run = BatchRun(self, users=users)
        self.progress_row.layout.display = None
        self.progress.bar_style = ""
        self.draw(0, max(users, 1), "")
        self.progress_label.value = f"starting {users:,} lookups…"
        self.stop_button.description = STOP_LABEL
        self.stop_button.disabled = False
        return run

    def done(self, run: BatchRun, fetched: _invoke.Fetched | None) -> None:
        """The batch of ``run`` ended (``fetched`` is ``None`` when it failed as a whole): Stop is disabled again."""
        self.stop_button.disabled = True
        self.stop_button.description = STOP_LABEL
        run.finish(fetched)
        if self.run is run:
            self.run = None
        if self.mode.value == "one":  # switched away while the batch ran: Stop stayed until now
            self.stop_button.layout.display = "none"

    def draw(self, finished: int, total: int, note: str, *, stopping: bool = False, style: str | None = None) -> None:
        """Show ``finished`` of ``total`` on the bar and the note beside it."""
        self.progress.max = max(total, 1)
        self.progress.value = min(finished, self.progress.max)
        if style is not None:
            self.progress.bar_style = style
        parts = [f"{finished:,} of {total:,}"]
        if stopping and style is None:
            parts.append("stopping: keeping what finished…")
        if note:
            parts.append(note)
        self.progress_label.value = " · ".join(parts)

    def outputs(self, invocation: Invocation, fetched: _invoke.Fetched) -> list[dict[str, Any]]:
        """What a finished batch shows: the magic's summary line, the bound name, the failures, then the result."""
        result, batch, summary = fetched
        outputs = [_output({"text/plain": summary, "text/html": f"<b class='amp-summary'>{html.escape(summary)}</b>"})]
        # As in the magic: an interrupted batch without -o keeps what finished in _ampprofile_partial.
        out = invocation.out or (_invoke.PARTIAL_RESULT_NAME if batch.interrupted else None)
        bound = _invoke.bind(self.host, out, result)
        if bound is not None:
            outputs.append(_output({"text/plain": bound}))
        if batch.interrupted and out is not None:
            outputs.append(_output({"text/plain": _invoke.interrupted_message(batch, out)}))
        if batch.failures:
            outputs.append(self._failures_output(batch))
        outputs.append(self._result_output(result))
        return outputs

    def _failures_output(self, batch: Any) -> dict[str, Any]:
        from amp_profile_magic._result import failure_records, failures_frame

        frame = failures_frame(failure_records(batch))
        rows = self.host.display_max_rows
        heading = f"failures ({len(frame):,})"
        return _output(
            {
                "text/plain": f"{heading}\n{frame.to_string(max_rows=rows)}",
                "text/html": f"<h4 class='amp-failures' style='margin:8px 0 4px'>{heading}</h4>"
                + frame.to_html(max_rows=rows, notebook=True),
            }
        )

    def _result_output(self, result: Any) -> dict[str, Any]:
        from amp_profile_magic._result import ProfileResult

        if isinstance(result, ProfileResult) and len(result.failures):
            # The failures are shown just above: a view of the same frames without them, for display only.
            result = ProfileResult(
                dict(result.items()),
                failures=result.failures.iloc[:0],
                summary=result.summary,
                max_rows=self.host.display_max_rows,
            )
        formatter = self.host.shell.display_formatter if self.host.shell is not None else None
        if formatter is not None:
            data, metadata = formatter.format(result)
        else:
            from IPython.core.formatters import format_display_data

            data, metadata = format_display_data(result)
        return _output(data, metadata)

    # -- the namespace's variables ---------------------------------------------------------------------------------

    def scan(self) -> None:
        """Offer the namespace's variables that can hold ids, keeping the chosen one while it still exists."""
        shell = self.host.shell
        options = id_variables(shell.user_ns, shell.user_ns_hidden) if shell is not None else []
        previous = self.variable.value
        names = [name for _, name in options]
        if tuple(options) != tuple(self.variable.options):
            # Setting options re-selects the first one: put the user's choice back, and tell the form once.
            self._quiet = True
            try:
                self.variable.options = options
                self.variable.value = previous if previous in names else None
            finally:
                self._quiet = False
        self._changed()

    def _watch_cells(self) -> None:
        """Rescan after every cell while the form is open: a cell that defines ``ids`` shows in the list at once."""
        shell = self.host.shell
        if shell is None:
            return
        panel = weakref.ref(self)

        def after_cell(result: object) -> None:
            alive = panel()
            if alive is None or alive.variable.comm is None:  # the form was closed or collected
                shell.events.unregister("post_run_cell", after_cell)
                return
            if alive.mode.value == "variable":
                alive.scan()

        shell.events.register("post_run_cell", after_cell)

    # -- internals ----------------------------------------------------------------------------------------------------

    def _mode_changed(self, change: object = None) -> None:
        if self.mode.value == "variable":
            self.scan()  # opening the list looks at the namespace as it is now
        self._layout()
        self._changed()

    def _layout(self) -> None:
        mode = self.mode.value
        self.single.layout.display = "none" if mode != "one" else None
        self.pasted.layout.display = None if mode == "paste" else "none"
        self.variable_row.layout.display = None if mode == "variable" else "none"
        self.widget.layout.display = None if mode != "one" else "none"
        # A running batch keeps its Stop button whatever the switch says.
        self.stop_button.layout.display = None if mode != "one" or self.run is not None else "none"
        if self.run is None:
            self.progress_row.layout.display = "none"

    def _changed(self, change: object = None) -> None:
        if not self._quiet and self.on_change is not None:
            self.on_change()

    def _stop_clicked(self, button: object) -> None:
        run = self.run
        if run is None:
            return
        self.stop_button.disabled = True
        self.stop_button.description = STOPPING_LABEL
        run.request_stop()
