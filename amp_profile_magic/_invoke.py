"""One invocation of ``%ampprofile``, shared by the magic and the form: parse → fetch → bind → summary or panel.

Both faces run through a :class:`Host` (the kernel's magics object: its client, shell and display settings).
Nothing here imports the magic or the form, so neither imports the other. A batch can be run from code as the
magic runs it, with its own progress callback and a stop event that ends it like Ctrl-C::

    fetched = fetch(host, invocation, identities, on_progress=show, stop=stop_event)
    fetched.result, fetched.summary      # what finished is kept; fetched.batch.interrupted says if it was cut
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

from IPython.core.error import UsageError

from amp_profile_magic import _exceptions as exc
from amp_profile_magic._gcpause import paused
from amp_profile_magic._grammar import GrammarError, Identity, Invocation, parse_ids, parse_line
from amp_profile_magic._panel import CellFailed, display_error
from amp_profile_magic._secret import redact
from amp_profile_magic._words import Evaluate

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from amp_profile_magic._batch import BatchResult, Outcome
    from amp_profile_magic._client import ProfileClient

__all__ = [
    "PARTIAL_RESULT_NAME",
    "PER_USER_FAILURES",
    "SETUP_FAILURES",
    "BatchInterrupted",
    "Fetched",
    "Host",
    "Progress",
    "bind",
    "checked",
    "describe",
    "fetch",
    "ids_from",
    "interrupted_message",
    "parse",
    "result_summary",
    "run",
]

T = TypeVar("T")

#: ``(finished, total, note)`` as unique lookups finish (at most every ``PROGRESS_INTERVAL`` seconds, and at the
#: last one), and with the same counts when the note changes (``"waiting on a throttle hold, 12s left"``,
#: ``"12 retries · paced down to 240/min after 3 throttles"`` or "").
Progress = Callable[[int, int, str], None]
#: Seconds between two progress reports.
PROGRESS_INTERVAL = 0.05

# Failures that say nothing about one user but about the whole setup: when every user of a batch fails with
# one of these, the cell fails like a single lookup would, instead of returning a table of identical errors.
SETUP_FAILURES = (
    exc.ConfigurationError,
    exc.InvalidKey,
    exc.MissingAuthHeader,
    exc.EndpointNotFound,
    exc.PlainHttpRedirect,
)

# Failures that are about one user: a batch where every user failed with one of them is still a result.
PER_USER_FAILURES = (exc.UnknownUser, exc.NotStored, exc.NotFetched, exc.InvalidQuery)

#: Where an interrupted batch without ``-o`` keeps what it fetched.
PARTIAL_RESULT_NAME = "_ampprofile_partial"


class BatchInterrupted(Exception):
    """Ends a cell whose batch was interrupted, after the partial result was kept."""

    def _render_traceback_(self) -> list[str]:
        return [f"KeyboardInterrupt: {self.args[0]}"]


class Host(Protocol):
    """What an invocation runs against: the kernel's client, shell and display settings (the magics object)."""

    @property
    def client(self) -> ProfileClient: ...  # pragma: no cover - a protocol

    @property
    def shell(self) -> InteractiveShell | None: ...  # pragma: no cover - a protocol

    @property
    def progress(self) -> bool: ...  # pragma: no cover - a protocol

    @property
    def display_max_rows(self) -> int: ...  # pragma: no cover - a protocol

    @property
    def raise_errors(self) -> bool: ...  # pragma: no cover - a protocol


class Fetched(NamedTuple):
    """A finished (or stopped) invocation: the DataFrame or ProfileResult, its batch, and the one-line summary."""

    result: Any
    batch: BatchResult
    summary: str


def checked(build: Callable[[], T], host: Host | None = None, *, magic: str = "%ampprofile") -> T:
    """``build()``, with a grammar complaint turned into ``magic``'s one-line :class:`UsageError`.

    With ``host``, its key is masked in the message: it may quote what the user's own expression raised, and an
    expression can read the key (``{int(os.environ['AMPLITUDE_SECRET_KEY'])}``).
    """
    try:
        return build()
    except (GrammarError, exc.SectionFailed) as error:  # a plugin's request() or params() failing, named
        message = str(error) if host is None else _masked(host, str(error))
    raise UsageError(f"{magic}: {message}")


def _masked(host: Host, text: str) -> str:
    """``text`` without the client's key, nor the one in the environment (set aside while the emulator runs)."""
    for secret in (host.client.api_key.reveal(), os.environ.get("AMPLITUDE_SECRET_KEY", "")):
        text = redact(text, secret)
    return text


def _evaluator(shell: InteractiveShell | None, local_ns: dict[str, Any] | None) -> Evaluate | None:
    """Evaluate an expression as IPython's own expansion would: the caller's locals over the user namespace."""
    if shell is None:
        return None
    if local_ns is None or local_ns is shell.user_ns:
        return lambda source: eval(source, shell.user_global_ns, shell.user_ns)  # noqa: S307 - the user's own code
    merged = {**shell.user_ns, **local_ns}
    return lambda source: eval(source, merged)  # noqa: S307 - the user's own code, in a function's scope


def parse(
    host: Host, line: str, *, cell: bool = False, local_ns: dict[str, Any] | None = None, magic: str = "%ampprofile"
) -> Invocation:
    """Parse a line as ``%ampprofile`` does, expanding ``{expr}`` and ``$name`` in the host's namespace; ``magic``
    names the magic in a complaint."""
    evaluate = _evaluator(host.shell, local_ns)
    return checked(lambda: parse_line(line, cell=cell, evaluate=evaluate), host, magic=magic)


def ids_from(
    host: Host, option: str, expression: str | None, local_ns: dict[str, Any] | None = None
) -> list[str] | None:
    """The ids that ``--users``/``--devices`` ``expression`` evaluates to, or ``None`` without the option."""
    if expression is None:
        return None
    evaluate = _evaluator(host.shell, local_ns)
    try:
        values = evaluate(expression) if evaluate is not None else None
    except Exception as error:
        message = _masked(host, " ".join(str(error).split()))
        raise UsageError(f"%ampprofile: {option} {expression}: {type(error).__name__}: {message}") from None
    with paused():
        return checked(lambda: parse_ids(expression, values), host)


def _bar(total: int) -> tuple[Progress, Callable[[], None]]:
    """A tqdm progress bar as a :data:`Progress` callback (the magic's default for batches), and its close."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="profile", desc="ampprofile", leave=False)

    def show(finished: int, total: int, note: str) -> None:
        # A note alone (a throttle hold starting or ending) is drawn at once; with a step, by the step's redraw.
        bar.set_postfix_str(note, refresh=finished == bar.n)
        if finished > bar.n:
            bar.update(finished - bar.n)
        if finished >= total:
            bar.close()

    return show, bar.close


def _callbacks(
    host: Host, total: int, on_progress: Progress | None
) -> tuple[Callable[[Outcome], None] | None, Callable[[float], None] | None, Callable[[], None]]:
    """``lookup_many``'s ``on_outcome`` and ``on_wait`` feeding ``on_progress`` (or the bar when none is given), and
    what ends the bar however the batch ends (a failed setup or an interrupt never reaches its last step)."""
    close: Callable[[], None] = _nothing
    if on_progress is None:
        if not host.progress or total < 2:
            return None, None, close
        on_progress, close = _bar(total)
    report = on_progress
    finished = [0]
    shown = [0.0]

    def advance(outcome: Outcome) -> None:
        finished[0] += 1
        now = time.monotonic()
        # At most 20 redraws a second, and always the last: a cached re-run finishes 100,000 users at once, and a
        # redraw (with its note) per user took longer than reading them.
        if finished[0] < total and now - shown[0] < PROGRESS_INTERVAL:
            return
        shown[0] = now
        # "12 retries (2 throttled) · paced down to 240/min after 3 throttles", when any.
        report(finished[0], total, host.client.progress_note())

    def waiting(seconds: float) -> None:
        # Without this a kernel-wide Retry-After hold looks like a hung batch.
        note = f"waiting on a throttle hold, {seconds:.0f}s left" if seconds > 0 else host.client.progress_note()
        report(finished[0], total, note)

    return advance, waiting, close


def _nothing() -> None:
    return None


def _raise_if_wholly_failed(batch: BatchResult, *, single: bool) -> None:
    errors = [outcome.error for outcome in batch if outcome.error is not None]
    if not errors or batch.interrupted:
        return
    if single:
        raise errors[0]
    if len(errors) < len(batch):
        return
    if all(isinstance(error, SETUP_FAILURES) for error in errors):
        raise errors[0]
    if not any(_about_its_user(error) for error in errors):
        # Every user failed, none for a reason of its own (an endpoint that refuses them all, an HTML page where
        # the API should be, nothing listening): an empty table would let Run All and papermill carry on.
        raise errors[0]


def _about_its_user(error: exc.ProfileError) -> bool:
    # A value of the user's own profile that cannot be read (a field is named) is that user's failure, like an
    # unknown user: a batch of them is still a result, with each one's field in its failures.
    named_field = isinstance(error, exc.MalformedResponse) and error.field is not None
    return isinstance(error, PER_USER_FAILURES) or named_field


def fetch(
    host: Host,
    invocation: Invocation,
    identities: Sequence[Identity],
    *,
    on_progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> Fetched:
    """Run ``invocation`` for ``identities`` (one, or a batch) and build its result.

    ``on_progress`` replaces the magic's progress bar; setting ``stop`` ends the batch like Ctrl-C: what finished
    is kept, the rest are ``not_fetched`` failures and ``batch.interrupted`` is true. Raises
    :class:`amp_profile_magic.ProfileError` when the whole lookup failed (see ``SETUP_FAILURES``).
    """
    from amp_profile_magic._result import build_result

    with paused():
        queries = checked(lambda: invocation.queries(identities))
        # The progress bar's total: duplicates are one lookup. Only counted when there is a bar to show.
        unique = len(set(queries)) if on_progress is not None or host.progress else len(queries)
    on_outcome, on_wait, close_bar = _callbacks(host, unique, on_progress)
    try:
        batch = host.client.lookup_many(
            queries,
            on_outcome=on_outcome,
            on_wait=on_wait,
            cache=invocation.cache,  # type: ignore[arg-type]  # the grammar only makes the three policies
            stop=stop,
        )
    finally:
        close_bar()  # before the error panel, which was drawn on the bar's line
    # A batch (--users, a cell body, the form's ids) keeps batch rules with one id: a filter that left one user
    # must not turn a per-user failure into a failed cell with nothing bound.
    _raise_if_wholly_failed(batch, single=invocation.identity is not None)
    with paused():
        result = build_result(invocation.sections, batch, max_rows=host.display_max_rows)
    return Fetched(result, batch, result_summary(result))


def bind(host: Host, name: str | None, result: Any) -> str | None:
    """Put ``result`` in the user's namespace as ``name`` (``-o NAME``); the line that says so, or ``None``."""
    if name is None or host.shell is None:
        return None
    host.shell.user_ns[name] = result
    return f"{name} = {describe(result)}"


def _failed(host: Host, error: exc.ProfileError) -> None:
    display_error(error)
    if host.raise_errors:
        raise CellFailed(error) from None


def run(host: Host, invocation: Invocation, identities: Sequence[Identity], *, single: bool) -> Any:
    """What ``%ampprofile`` does with a parsed line: fetch, then the result, or a summary and the ``-o`` binding.

    A failure shows the error panel and, under ``raise_errors``, ends the cell in error.
    """
    from IPython.display import display

    if invocation.dry_run:
        try:
            queries = checked(lambda: invocation.queries(identities))
            plan = host.client.plan(queries, cache=invocation.cache)  # type: ignore[arg-type]
        except exc.ProfileError as error:
            return _failed(host, error)
        print(plan.describe())
        if invocation.out:
            print(f"{invocation.out} is not bound: a dry run fetches nothing.")
        return None
    try:
        result, batch, summary = fetch(host, invocation, identities)
    except exc.ProfileError as error:
        return _failed(host, error)
    if not single or batch.retries or batch.pacing.describe():
        # A single lookup is quiet unless it needed retries: then its one summary line says how many.
        display({"text/plain": summary}, raw=True)
    # An interrupted cell cannot return a value, so its finished rows go to a name the message gives.
    out = invocation.out or (PARTIAL_RESULT_NAME if batch.interrupted else None)
    bound = bind(host, out, result)
    if bound is not None:
        display({"text/plain": bound}, raw=True)
        result = None
    if batch.interrupted:
        raise BatchInterrupted(interrupted_message(batch, out or PARTIAL_RESULT_NAME))
    return result


def interrupted_message(batch: BatchResult, out: str) -> str:
    """What an interrupted batch says (the magic's KeyboardInterrupt line, the form's after Stop)."""
    fetched = len(batch) - len(batch.failures)
    failed = len(batch.failures) - batch.missing
    also = f" and the {failed} that failed" if failed else ""
    return (
        f"{batch.missing} of {len(batch)} users not fetched; the {fetched} fetched are in {out} "
        f"(its failures list the missing ones{also})"
    )


def result_summary(result: Any) -> str:
    """The one-line batch summary stored on a result."""
    summary = getattr(result, "summary", None)
    if isinstance(summary, str):
        return summary
    return str(result.attrs.get("summary", ""))


def describe(result: Any) -> str:
    """``DataFrame 10 rows × 9 columns`` or ``ProfileResult recs 10×9, props 1×7``."""
    if hasattr(result, "shape"):
        rows, columns = result.shape
        return f"DataFrame ({rows} rows × {columns} columns)"
    shapes = ", ".join(f"{name} {len(frame)}×{frame.shape[1]}" for name, frame in result.items())
    return f"ProfileResult ({shapes})"
