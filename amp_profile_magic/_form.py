"""``%ampprofile_form``: an ipywidgets form that builds an ``%ampprofile`` line and runs it like the magic does.

The section controls come from the section plugins' :meth:`~amp_profile_magic.sections.Section.controls`, so a
plugin gets its controls without this module knowing about it. The form never holds the secret key: it goes
through the kernel's :class:`AmpProfileMagics` and its client, exactly like ``%ampprofile``.
"""

from __future__ import annotations

import html
import logging
import textwrap
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from amp_profile_magic import _exceptions as exc
from amp_profile_magic import _invoke
from amp_profile_magic._form_batch import BatchPanel, BatchRun
from amp_profile_magic._grammar import GrammarError, Identity, Invocation, parse_line
from amp_profile_magic._panel import error_bundle
from amp_profile_magic._words import quote
from amp_profile_magic.sections import Control, available_sections
from amp_profile_magic.sections._registry import controls_of

if TYPE_CHECKING:
    import ipywidgets as widgets

__all__ = ["ProfileForm", "form_line"]

log = logging.getLogger(__name__)

IDLE_LABEL = "Fetch"
BUSY_LABEL = "Fetching…"
IDLE_ICON = "download"
BUSY_ICON = "spinner"
#: First line of the form's text form, shown where widgets do not render.
FALLBACK_INTRO = (
    "This %ampprofile_form form needs a notebook front end that renders widgets "
    "(JupyterLab, Jupyter Notebook or VS Code)."
)


def form_line(tokens: list[str]) -> str:
    """The ``%ampprofile`` line for ``tokens`` (words already quoted by :func:`~._words.quote`)."""
    return "%ampprofile " + " ".join(tokens)


@dataclass(slots=True)
class _Field:
    """One plugin control and the widget that shows it."""

    control: Control
    widget: widgets.ValueWidget

    def tokens(self) -> list[str]:
        """This control's words on the line, each value quoted so that the line reads it back exactly."""
        keyword, value = self.control.keyword, self.widget.value
        if self.control.kind == "toggle":
            return [keyword] if value else []
        if self.control.kind == "choice":
            return [] if value in ("", None, self.control.default) else [f"{keyword}={quote(str(value))}"]
        # A comma-separated box: the spaces a user types after commas are layout, and the line shows them gone.
        text = ",".join(part.strip() for part in str(value).split(",")) if str(value).strip() else ""
        if not text:
            return []
        if self.control.bare_word and text.lower() == self.control.bare_word.lower():
            return [keyword]
        return [f"{keyword}={quote(text, commas=True)}"]

    def set(self, value: str | None) -> None:
        """Show the grammar value ``value`` (``None`` for a bare keyword) in the widget."""
        if self.control.kind == "toggle":
            self.widget.value = True
        elif value is None:
            self.widget.value = self.control.bare_word
        else:
            self.widget.value = value


def _field(control: Control) -> _Field:
    import ipywidgets as widgets

    layout = widgets.Layout(width="auto")
    style = {"description_width": "initial"}
    widget: widgets.ValueWidget
    if control.kind == "toggle":
        widget = widgets.Checkbox(
            value=bool(control.default), description=control.label, indent=False, layout=layout, style=style
        )
    elif control.kind == "choice":
        options = list(control.options)
        default = control.default if control.default in options else options[0] if options else None
        # An empty option means "leave the keyword out"; a blank dropdown entry would look like a glitch.
        labelled = [(option or "(default)", option) for option in options]
        widget = widgets.Dropdown(options=labelled, value=default, description=control.label, style=style)
    else:
        # "ids", and any kind a newer plugin invents: a text box whose content becomes keyword=content.
        widget = widgets.Text(
            value=str(control.default or ""),
            placeholder=control.placeholder,
            description=control.label,
            style=style,
        )
    widget.add_class(f"amp-control-{control.keyword}")
    return _Field(control=control, widget=widget)


class ProfileForm:
    """An interactive form for one profile: who, which sections, an optional variable; Fetch shows the tables.

    The line under the controls is the ``%ampprofile`` call the form will run, ready to paste into a cell. Fetch
    parses that line and runs it through :mod:`._invoke` like the magic, so the form shares the kernel's client, pacing,
    ``%config`` settings and ``%ampprofile_emulator`` switch. The lookup runs on a background thread (the kernel
    stays free for other cells); the button is disabled until it finishes, and a failure shows the magic's error
    panel and leaves the form ready for the next try.

    The who switch turns the form to a batch (see :mod:`._form_batch`): ids pasted one per line (the line becomes
    the equivalent ``%%ampprofile`` cell) or a variable of ids (``--users NAME``), with a progress bar, a Stop
    button that keeps what finished, and the magic's summary line::

        In [1]: %load_ext amp_profile_magic
        In [2]: %ampprofile_emulator
        In [3]: %ampprofile_form user=12345 recs=testRecId      # prefilled; or just %ampprofile_form
    """

    def __init__(self, magics: _invoke.Host, *, line: str = "", background: bool = True) -> None:
        import ipywidgets as widgets

        self.magics = magics
        self.background = background
        self._lock = threading.Lock()
        self._busy = False
        self._thread: threading.Thread | None = None
        self._invocation: Invocation | None = None
        self._identities: list[Identity] = []
        self._source = ""
        self._note = ""
        self._error: str | None = None

        self.identity_kind = widgets.Dropdown(options=["user", "device"], value="user", layout={"width": "90px"})
        self.identity_kind.add_class("amp-identity-kind")
        self.identity_value = widgets.Text(placeholder="user id, e.g. 12345", layout={"width": "260px"})
        self.identity_value.add_class("amp-identity-value")
        self.batch = BatchPanel(magics, single=self.identity_value, on_change=self._refresh)

        self.fields: dict[str, _Field] = {}
        groups = []
        for section in available_sections().values():
            fields = [_field(control) for control in controls_of(section)]
            if not fields:
                continue
            self.fields.update((field.control.keyword, field) for field in fields)
            # The section's own help lines, as %ampprofile? shows them, on hovering its name.
            title = widgets.HTML(
                f"<b>{html.escape(section.name)}</b>", layout={"width": "90px"}, tooltip="\n".join(section.usage)
            )
            group = widgets.HBox([title, *(field.widget for field in fields)])
            group.add_class(f"amp-section-{section.name}")
            groups.append(group)

        self.out_name = widgets.Text(placeholder="optional", description="Bind to", layout={"width": "260px"})
        self.out_name.add_class("amp-out-name")
        self.fetch_button = widgets.Button(description=IDLE_LABEL, icon=IDLE_ICON, button_style="primary")
        self.fetch_button.add_class("amp-fetch")
        self.line_view = widgets.HTML()
        self.line_view.add_class("amp-line")
        self.output = widgets.Output()
        self.output.add_class("amp-output")

        who = widgets.HBox(
            [
                widgets.HTML("<b>who</b>", layout={"width": "90px"}),
                self.identity_kind,
                self.identity_value,
                self.batch.mode,
            ]
        )
        buttons = widgets.HBox([self.out_name, self.fetch_button, self.batch.stop_button])
        self.widget = widgets.VBox(
            [who, self.batch.widget, *groups, buttons, self.batch.progress_row, self.line_view, self.output]
        )
        self.widget.add_class("amp-profile-form")

        if line.strip():
            self._prefill(line)
        self.identity_kind.observe(self._kind_changed, names="value")
        for control in (self.identity_kind, self.identity_value, self.out_name, *self._field_widgets()):
            control.observe(self._refresh, names="value")
        self.fetch_button.on_click(self._on_click)
        self._kind_changed()
        self._refresh()

    # -- what the form says ---------------------------------------------------------------------------------------

    def tokens(self) -> list[str]:
        """The line's words for the current selection (not validated), values quoted to be read back exactly.

        Raises :class:`GrammarError` for a value no line can hold (a line break).
        """
        tokens = []
        # The id exactly as in the box (spaces too: the line then shows them quoted), like %ampprofile sends it.
        who = self.identity_value.value
        if self.batch.active:
            tokens += self.batch.who_tokens(self.identity_kind.value)
        elif who.strip():
            tokens.append(f"{self.identity_kind.value}={quote(who)}")
        for field in self.fields.values():
            tokens += field.tokens()
        name = self.out_name.value.strip()
        if name:
            tokens += ["-o", quote(name)]
        return tokens

    @property
    def line(self) -> str | None:
        """The ``%ampprofile`` line (a ``%%ampprofile`` cell for pasted ids) equivalent to the selection.

        ``None`` while the selection is invalid.
        """
        return self._source if self._invocation is not None else None

    @property
    def error(self) -> str | None:
        """The grammar's one-line complaint about the current selection, or ``None`` when it is valid."""
        return self._error

    @property
    def busy(self) -> bool:
        """Whether a lookup is running."""
        return self._busy

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a running lookup to finish; ``True`` if none is running any more."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.busy

    def fetch(self) -> None:
        """Run the current selection (what the Fetch button does); ignored while a lookup is running."""
        self._on_click(self.fetch_button)

    # -- display ----------------------------------------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # A closed widget sets its own _repr_mimebundle_ to None: then only the text is left to show.
        widget_bundle = self.widget._repr_mimebundle_
        bundle = widget_bundle(**kwargs) if callable(widget_bundle) else None
        # Front ends that render widgets pick the widget view; everywhere else (terminal IPython, nbconvert HTML
        # and previews of a notebook saved without widget state) text/plain is what shows, and the widget's own
        # is a truncated VBox(children=...) repr. Say what the form needs, and what to run instead.
        return {**(bundle or {}), "text/plain": self.text_fallback()}

    def text_fallback(self) -> str:
        """What the form shows where widgets cannot render: what it needs, and the equivalent ``%ampprofile`` line."""
        line = self.line
        if line is None:
            return f"{FALLBACK_INTRO}\nNo equivalent line yet: {self.error} (%ampprofile? shows the grammar)."
        what = "cell" if "\n" in line else "line"
        return f"{FALLBACK_INTRO}\nThe equivalent {what}, to run instead:\n{textwrap.indent(line, '  ')}"

    def __repr__(self) -> str:
        return f"<ProfileForm {self.line or self.error}>"

    # -- internals ---------------------------------------------------------------------------------------------------

    def _field_widgets(self) -> list[widgets.ValueWidget]:
        return [field.widget for field in self.fields.values()]

    def _prefill(self, line: str) -> None:
        invocation = _invoke.parse(self.magics, line, magic="%ampprofile_form")
        if invocation.identity is None:
            self._prefill_batch(invocation)
            return
        identity = invocation.identity
        if identity.user_id is not None and identity.device_id is not None:
            raise UsageError("%ampprofile_form: give user= or device=, not both (the form asks for one of them)")
        self.identity_kind.value = "user" if identity.user_id is not None else "device"
        self.identity_value.value = identity.user_id or identity.device_id or ""
        self._prefill_rest(invocation)

    def _prefill_rest(self, invocation: Invocation) -> None:
        for flag, given in (
            ("--refresh", invocation.cache == "refresh"),
            ("--store-only", invocation.cache == "only"),
            ("--dry-run", invocation.dry_run),
        ):
            if given:  # dropped, the form's line would fetch what the flag said not to (or fetch at all)
                raise UsageError(f"%ampprofile_form: {flag} has no form control; use %ampprofile for it")
        self.out_name.value = invocation.out or ""
        for keyword, value in invocation.keywords.items():
            if keyword not in self.fields:
                raise UsageError(f"%ampprofile_form: {keyword!r} has no form control; use %ampprofile for it")
            self.fields[keyword].set(value)

    def _prefill_batch(self, invocation: Invocation) -> None:
        """``--users NAME`` (or ``--devices NAME``): the batch switch on "variable", with NAME picked."""
        if invocation.users_expr is not None and invocation.devices_expr is not None:
            raise UsageError("%ampprofile_form: give --users or --devices, not both (pairs need %ampprofile)")
        kind = "user" if invocation.users_expr is not None else "device"
        name = invocation.users_expr or invocation.devices_expr or ""
        self.identity_kind.value = kind
        self.batch.mode.value = "variable"
        if name not in {value for _, value in self.batch.variable.options}:
            raise UsageError(
                f"%ampprofile_form: --{kind}s {name}: no variable {name!r} holding ids (a list, tuple, Series, Index "
                f"or 1-D array) in the namespace; the form picks one by name, an expression needs %ampprofile"
            )
        self.batch.variable.value = name
        self._prefill_rest(invocation)

    def _kind_changed(self, change: object = None) -> None:
        example = "12345" if self.identity_kind.value == "user" else "ffff-ffff-ffff-ffff"
        self.identity_value.placeholder = f"{self.identity_kind.value} id, e.g. {example}"

    def _parse(self) -> tuple[Invocation, list[Identity], str, str]:
        """The selection read as the magic reads it: invocation, identities, equivalent line or cell, and a note."""
        tokens = self.tokens()
        if self.batch.active:
            parsed = self.batch.parse(self.identity_kind.value, tokens)
            return parsed.invocation, parsed.identities, parsed.source, parsed.note
        # The form runs exactly the line it shows: quoted values are literal, so no namespace is needed.
        invocation = parse_line(" ".join(tokens))
        assert invocation.identity is not None  # the tokens hold user= or device=
        return invocation, [invocation.identity], form_line(tokens), ""

    def _refresh(self, change: object = None) -> None:
        try:
            self._invocation, self._identities, self._source, self._note = self._parse()
            self._error = None
        except GrammarError as error:
            self._invocation, self._identities, self._error = None, [], str(error)
            self.line_view.value = (
                f"<span class='amp-line-error' style='color:#d9534f'>✖ {html.escape(self._error)}</span>"
            )
        else:
            source = html.escape(self._source)
            code = f"<code class='amp-line-ok' style='user-select:all'>{source}</code>"
            if "\n" in self._source:
                # A cell of pasted ids: kept whole (it is what to copy), scrolled when long.
                code = f"<pre style='margin:0;max-height:14em;overflow:auto'>{code}</pre>"
            note = f" <span class='amp-line-note' style='opacity:.7'>({html.escape(self._note)})</span>"
            self.line_view.value = code + (note if self._note else "")
        self.fetch_button.disabled = self._invocation is None or self.busy

    def _on_click(self, button: object) -> None:
        if self.batch.active and not self.busy:
            # A variable's ids are read when Fetch is pressed, as the pasted line reads them when it runs.
            self.batch.forget()
            self._refresh()
        # Button.click() and a frontend's double click both reach here: only one lookup at a time.
        with self._lock:
            invocation, identities = self._invocation, self._identities
            busy = self._busy
            if not busy and invocation is not None:
                self._busy = True
        if busy:
            return
        if invocation is None:
            # The variable changed since it was listed (a thread, a widget callback): what the line view says goes
            # in the output too, where the last result would otherwise stay as if this Fetch had given it.
            self.output.outputs = (_text(f"✖ {self._error or 'nothing to fetch'}"),)
            return
        self.fetch_button.disabled = True
        self.fetch_button.description = BUSY_LABEL
        self.fetch_button.icon = BUSY_ICON
        run = self.batch.start(len(identities)) if self.batch.active else None
        what = self.line if run is None else f"{len(identities):,} {self.identity_kind.value}s"
        self.output.outputs = (_text(f"Fetching: {what} …"),)
        if not self.background:
            self._run(invocation, identities, run)
            return
        # A daemon thread: a kernel shutting down mid-lookup must not wait for it.
        self._thread = threading.Thread(
            target=self._run, args=(invocation, identities, run), name="amp-profile-form", daemon=True
        )
        self._thread.start()

    def _run(self, invocation: Invocation, identities: list[Identity], run: BatchRun | None) -> None:
        started = time.monotonic()
        try:
            self.output.outputs = self._outputs(invocation, identities, run, started)
        finally:
            self.fetch_button.description = IDLE_LABEL
            self.fetch_button.icon = IDLE_ICON
            with self._lock:
                self._busy = False
            self._refresh()

    def _outputs(
        self, invocation: Invocation, identities: list[Identity], run: BatchRun | None, started: float
    ) -> tuple[dict[str, Any], ...]:
        fetched = None
        try:
            fetched = _invoke.fetch(
                self.magics,
                invocation,
                identities,
                on_progress=run.on_progress if run is not None else None,
                stop=run.stop if run is not None else None,
            )
        except exc.ProfileError as error:
            return (_bundle(error_bundle(error)),)
        except UsageError as error:
            return (_bundle({"text/plain": f"✖ {error}"}),)
        except Exception as error:
            # The form runs on its own thread: an unexpected failure must show up, not vanish into a log.
            log.exception("The profile form's lookup failed")
            return (_bundle({"text/plain": f"✖ Unexpected error: {type(error).__name__}: {error}"}),)
        finally:
            if run is not None:
                self.batch.done(run, fetched)
        if run is not None:
            return tuple(self.batch.outputs(invocation, fetched))
        result, batch, summary = fetched
        outputs = []
        bound = _invoke.bind(self.magics, invocation.out, result)
        if bound is not None:
            outputs.append(_text(bound))
        formatter = self.magics.shell.display_formatter if self.magics.shell is not None else None
        if formatter is not None:
            data, metadata = formatter.format(result)
        else:
            from IPython.core.formatters import format_display_data

            data, metadata = format_display_data(result)
        outputs.append(_bundle(data, metadata))
        took = f"fetched in {time.monotonic() - started:.1f} s"
        if batch.retries or batch.pacing.describe():
            # As in the magic: a lookup that needed retries says so once, with the summary line's counts.
            took += f" · {summary}"
        outputs.append(_text(took))
        return tuple(outputs)


def _bundle(data: dict[str, Any], metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"output_type": "display_data", "data": data, "metadata": metadata or {}}


def _text(text: str) -> dict[str, Any]:
    return _bundle({"text/plain": text})
