"""How ``%ampprofile`` text becomes words: quotes, ``{expr}`` and ``$name`` expansion, and quoting back.

IPython's own expansion pastes a variable's text into the line *before* the magic splits it, so a value holding
spaces became several grammar tokens, quotes and backslashes in it were eaten by the split, and an expansion that
failed left the whole line as typed. The magic opts out of that (``no_var_expand``) and expands here, *after* the
line is split into words: an expansion is always part of one word, whatever its value holds.

The rules (``%ampprofile?`` shows them too):

* Words are separated by spaces and tabs.
* ``'…'`` and ``"…"`` quote literally: nothing inside is expanded, and the text may hold spaces, ``=``, ``#``,
  ``$``, braces and the other quote; the same quote doubled stands for itself (``'it''s'``). A quote opens only
  at the start of a value (a word's start, or right after ``=`` or ``,``) and closes at its end (before a space,
  a ``,`` or the end), so ``o'brien`` or ``"say "hi""`` are refused, not read as something else. A backslash is
  an ordinary character everywhere.
* Unquoted, ``{expr}`` is a Python expression and ``$name`` a variable (a name only: ``$a.b`` is ``a``'s value
  then ``.b``), both from the namespace; each gives exactly the text of one value. ``$$``, ``{{`` and ``}}``
  stand for ``$``, ``{`` and ``}``; any other ``$`` or ``}`` is refused.
* Unicode spaces other than the ASCII ones (a no-break space, say) are refused unquoted: they look like a word
  break but would be part of the id.
"""

from __future__ import annotations

import math
import numbers
import re
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Evaluate",
    "Expanded",
    "GrammarError",
    "Piece",
    "Word",
    "article",
    "expand",
    "id_text",
    "quote",
    "split_words",
    "strip_comment",
]

#: Looks a Python expression up in the user's namespace (the magic passes one built on the shell).
Evaluate = Callable[[str], object]

ASCII_SPACE = " \t\n\r\f\v"
NAME = re.compile(r"[^\W\d]\w*")
#: Characters a value keeps unquoted when the form writes its line; anything else is quoted.
SAFE = re.compile(r"[\w\-.:@/+%]+")
#: Largest magnitude below which every integer is exactly a float (IEEE 754 double: 53-bit significand).
EXACT_FLOAT_LIMIT = 2**53
_BRACKETS = {"(": ")", "[": "]", "{": "}"}


class GrammarError(ValueError):
    """A line or cell the grammar cannot accept; the message names the offending token."""


@dataclass(frozen=True, slots=True)
class Piece:
    """One part of a word: unquoted ``plain`` text, ``quoted`` text, an ``expr`` in braces or a ``$name``."""

    kind: Literal["plain", "quoted", "expr", "name"]
    text: str


@dataclass(frozen=True, slots=True)
class Word:
    """One whitespace-separated word: its pieces, and the text it was written as."""

    source: str
    pieces: tuple[Piece, ...]
    #: Why the word cannot be read as literal text (a misplaced quote); Python source (``--users``) ignores it.
    problem: str | None = None

    @property
    def is_plain(self) -> bool:
        """Whether the word is unquoted literal text only."""
        return all(piece.kind == "plain" for piece in self.pieces)

    @property
    def text(self) -> str:
        """The word's literal text; only for words without expansions."""
        return "".join(piece.text for piece in self.pieces if piece.kind in ("plain", "quoted"))

    def split_key(self) -> tuple[str, Word] | None:
        """``(keyword, value)`` at the first unquoted ``=``, or ``None`` when there is none.

        Everything before that ``=`` must be plain text: a keyword is never quoted and never comes from a variable.
        """
        for index, piece in enumerate(self.pieces):
            if piece.kind != "plain" or "=" not in piece.text:
                continue
            head, _, tail = piece.text.partition("=")
            before = self.pieces[:index]
            if any(earlier.kind != "plain" for earlier in before):
                raise GrammarError(
                    f"{self.source}: write the keyword plainly; only a value may be quoted or come from a variable"
                )
            key = "".join(earlier.text for earlier in before) + head
            rest = ((Piece("plain", tail),) if tail else ()) + self.pieces[index + 1 :]
            return key, Word(self.source.partition("=")[2], rest, self.problem)
        return None


@dataclass(frozen=True, slots=True)
class Expanded:
    """A word's value after expansion, remembering which text came from where."""

    parts: tuple[tuple[Piece, str], ...]

    @property
    def text(self) -> str:
        """The value's text, exactly."""
        return "".join(text for _piece, text in self.parts)

    def plain_has(self, char: str) -> bool:
        """Whether ``char`` occurs in the unquoted literal text."""
        return any(piece.kind == "plain" and char in text for piece, text in self.parts)

    def holder(self, char: str) -> str | None:
        """The first quoted part or expansion (as written) whose text holds ``char``, if any."""
        for piece, text in self.parts:
            if piece.kind != "plain" and char in text:
                return _written(piece)
        return None


def _written(piece: Piece) -> str:
    if piece.kind == "quoted":
        return quote(piece.text)
    return f"{{{piece.text}}}" if piece.kind == "expr" else f"${piece.text}"


def _word_around(text: str, index: int) -> str:
    """The whitespace-delimited stretch of ``text`` around ``index``, to name in a message."""
    start = index
    while start > 0 and text[start - 1] not in ASCII_SPACE:
        start -= 1
    end = index
    while end < len(text) and text[end] not in ASCII_SPACE:
        end += 1
    return text[start:end]


def _expression_end(text: str, start: int) -> int:
    """Index just past the ``}`` closing the ``{`` at ``start``, skipping brackets and strings inside."""
    stack = ["}"]
    index = start + 1
    while index < len(text):
        char = text[index]
        if char in "'\"":
            # A Python string inside the expression: its brackets and quotes do not count.
            index += 1
            while index < len(text) and text[index] != char:
                index += 2 if text[index] == "\\" else 1
            if index >= len(text):
                break
        elif char in _BRACKETS:
            stack.append(_BRACKETS[char])
        elif char in ")]}":
            if char != stack.pop():
                break
            if not stack:
                return index + 1
        index += 1
    raise GrammarError(f"{_word_around(text, start)}: no matching }} for the {{ (write {{{{ for a literal {{)")


def _quoted(text: str, index: int) -> tuple[int, str]:
    """The index of the quote closing the one at ``index``, and the text between (doubled quotes undone)."""
    char = text[index]
    chunks = []
    position = index + 1
    while True:
        close = text.find(char, position)
        if close < 0:
            raise GrammarError(
                f"{_word_around(text, index)}: no closing {char} (quotes go around a whole value: "
                f'user="o\'brien"; inside quotes, write a {char} as {char}{char})'
            )
        chunks.append(text[position:close])
        if text[close + 1 : close + 2] != char:
            return close, "".join(chunks)
        chunks.append(char)
        position = close + 2


class _Lexer:
    """One pass over a line or body line, building :class:`Word` s piece by piece."""

    def __init__(self, text: str, *, expand: bool, comments: bool) -> None:
        self.text = text
        self.expand = expand
        self.comments = comments
        self.words: list[Word] = []
        self.pieces: list[Piece] = []
        self.plain: list[str] = []
        self.start: int | None = None
        self.problem: str | None = None

    def flush_plain(self) -> None:
        if self.plain:
            self.pieces.append(Piece("plain", "".join(self.plain)))
            self.plain.clear()

    def add(self, kind: Literal["quoted", "expr", "name"], text: str) -> None:
        self.flush_plain()
        self.pieces.append(Piece(kind, text))

    def end_word(self, end: int) -> None:
        self.flush_plain()
        if self.start is not None:
            self.words.append(Word(self.text[self.start : end], tuple(self.pieces), self.problem))
        self.pieces.clear()
        self.start = self.problem = None

    def run(self) -> list[Word]:
        text, index = self.text, 0
        while index < len(text):
            char = text[index]
            if char in ASCII_SPACE:
                self.end_word(index)
                index += 1
                continue
            if self.start is None:
                if self.comments and char == "#":
                    break
                self.start = index
            index = self.step(index, char)
        self.end_word(index)
        return self.words

    def step(self, index: int, char: str) -> int:
        """Read what starts at ``index`` (not a word break); return where the next thing starts."""
        text = self.text
        if char in "'\"":
            return self.quote(index)
        if char in "${}" and not self.expand:
            raise GrammarError(
                f"{_word_around(text, index)}: $, {{ and }} are expanded only on the magic's line; "
                "quote an id that contains them"
            )
        if text[index : index + 2] in ("$$", "{{", "}}"):
            self.plain.append(char)
            return index + 2
        if char == "$":
            match = NAME.match(text, index + 1)
            if match is None:
                raise GrammarError(
                    f"{_word_around(text, index)}: $ must be followed by a variable name (write $$ for a literal $)"
                )
            self.add("name", match.group())
            return match.end()
        if char == "{":
            end = _expression_end(text, index)
            if not text[index + 1 : end - 1].strip():
                raise GrammarError(f"{_word_around(text, index)}: empty {{}} (write {{{{}}}} for literal braces)")
            self.add("expr", text[index + 1 : end - 1])
            return end
        if char == "}":
            raise GrammarError(f"{_word_around(text, index)}: a lone }} (write }}}} for a literal }})")
        if char > "\x7f" and char.isspace():
            raise GrammarError(
                f"{_word_around(text, index)}: holds U+{ord(char):04X}, a space that is not a word break; "
                "quote the id if it belongs to it"
            )
        if char > "\x7f" and unicodedata.category(char) == "Cf":
            # Zero-width spaces, byte-order marks (a pasted file's first line), direction marks: invisible, so an
            # id holding one looks right and is someone else.
            raise GrammarError(
                f"{_word_around(text, index)!r}: holds U+{ord(char):04X}, an invisible character; delete it, or "
                "quote the id if it belongs to it"
            )
        self.plain.append(char)
        return index + 1

    def quote(self, index: int) -> int:
        text = self.text
        close, quoted = _quoted(text, index)
        opens_value = index == self.start or text[index - 1] in "=,"
        closes_value = close + 1 == len(text) or text[close + 1] in ASCII_SPACE + ","
        if not (opens_value and closes_value) and self.problem is None:
            # Kept, not raised: a Python expression (--users df['a b']) may hold quotes anywhere.
            self.problem = (
                f"{_word_around(text, index)}: a quote goes around a whole value (user='a b'); "
                'a quote inside an id is doubled within quotes: \'o\'\'brien\', "say ""hi"""'
            )
        self.add("quoted", quoted)
        return close + 1


def strip_comment(text: str) -> str:
    """``text`` up to its comment: a ``#`` outside quotes at the start of a word (a shell's rule), ends stripped.

    For the magics whose arguments are read with :mod:`shlex`, which also cuts at a ``#`` inside a word.
    """
    quote_char: str | None = None
    for index, char in enumerate(text):
        if quote_char is not None:
            quote_char = None if char == quote_char else quote_char
        elif char in "'\"":
            quote_char = char
        elif char == "#" and (index == 0 or text[index - 1].isspace()):
            return text[:index].strip()
    return text.strip()


def split_words(text: str, *, expand: bool = True, comments: bool = False) -> list[Word]:
    """Split ``text`` into words by the rules above; ``expand=False`` refuses ``$``, ``{`` and ``}`` unquoted.

    With ``comments``, an unquoted ``#`` at the start of a word ends the text (the ``%%ampprofile`` body).
    """
    return _Lexer(text, expand=expand, comments=comments).run()


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        try:
            return math.isnan(float(value))  # NaN, also numpy's
        except (ArithmeticError, TypeError, ValueError):
            return False  # a number too large for a float (Fraction(10**400)): id_text says why it is no id
    pandas = sys.modules.get("pandas")
    # pandas is only ever imported by the user here: a missing value can only be pandas' when it is loaded.
    return pandas is not None and (value is pandas.NA or value is pandas.NaT)


def exact_float_limit(dtype: object) -> int:
    """Where a float type stops holding every integer: 2**53 for float64 (and Python's float), 2**24 for float32,
    2**11 for float16; never above 2**53, since ids go through Python's float."""
    dtype = getattr(dtype, "numpy_dtype", dtype)  # pandas' nullable Float32 and friends
    numpy = sys.modules.get("numpy")
    if numpy is None or getattr(dtype, "kind", None) != "f":
        return EXACT_FLOAT_LIMIT
    return int(min(EXACT_FLOAT_LIMIT, 2 ** (numpy.finfo(dtype).nmant + 1)))


def id_text(value: object, *, float_limit: int | None = None) -> str:
    """The exact text of one id value (str, int, or a float holding an exact whole number).

    ``float_limit``: where the float type the value came from stops holding every integer, when the value no
    longer says (a float32 column read out as Python floats); else the value's own type decides.
    Raises :class:`ValueError` with the reason (to follow the value's name) when the value is no single id.
    """
    if _is_missing(value):
        raise ValueError("is missing (None/NaN/NA): drop or fill missing ids first")
    if isinstance(value, str):
        return str(value)
    if type(value).__name__ in ("bool", "bool_"):  # Python's and numpy's (bool_ before numpy 2)
        raise ValueError(f"= {value!r} is a boolean, not an id")
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        try:
            number = float(value)
        except (ArithmeticError, TypeError, ValueError):
            raise ValueError(f"= {_shown(value)} is a number no float can hold, so not an id") from None
        if not number.is_integer():
            raise ValueError(f"= {_shown(value)} is not a whole number, so not an id")
        limit = min(float_limit or EXACT_FLOAT_LIMIT, exact_float_limit(getattr(value, "dtype", None)))
        if abs(number) >= limit:
            # A float32 column rounds 16777217 to 16777216 before it is read: sending it would look up someone else.
            raise ValueError(
                f"= {_shown(value)} is a float at or above 2**{limit.bit_length() - 1}, which cannot hold an exact "
                "integer id at its precision; keep such ids as int or str"
            )
        # A numeric id column that pandas made float (because of NaNs elsewhere) still means the integer.
        return str(int(number))
    raise ValueError(f"is {article(type(value).__name__)}, not one id")


def article(noun: str) -> str:
    """``an int``, ``a list``: the type name with its article, for messages."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _shown(value: object) -> str:
    """The value's repr, cut to a message's length (a 400-digit Fraction is not worth 800 characters)."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _one_line(text: str) -> str:
    return " ".join(text.split())


def expand(word: Word, evaluate: Evaluate | None, *, label: str | None = None) -> Expanded:
    """Expand ``word``'s ``{expr}`` and ``$name`` pieces, each into the text of exactly one value.

    Messages name ``label`` (the whole token, e.g. ``user={x}``), or else the word as written.
    """
    label = word.source if label is None else label
    if word.problem is not None:
        raise GrammarError(word.problem)
    parts: list[tuple[Piece, str]] = []
    for piece in word.pieces:
        if piece.kind in ("plain", "quoted"):
            parts.append((piece, piece.text))
            continue
        written = _written(piece)
        if evaluate is None:
            raise GrammarError(f"{label}: {written} cannot be expanded here (no namespace)")
        try:
            value = evaluate(piece.text)
        except Exception as error:
            # Whatever the expression raised, the user gets one line naming it, never a traceback.
            raise GrammarError(f"{label}: {type(error).__name__}: {_one_line(str(error))}") from None
        try:
            parts.append((piece, id_text(value)))
        except ValueError as error:
            raise GrammarError(f"{label}: {written} {error}") from None
    return Expanded(tuple(parts))


LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def quote(text: str, *, commas: bool = False) -> str:
    """``text`` written so that :func:`split_words` reads it back as one literal word of exactly that text.

    Safe text stays as it is; anything else is single-quoted, a ``'`` inside becoming ``''``. With ``commas``
    the text is a list (``recs=a,b``): each id is quoted on its own and the commas between stay unquoted.
    """
    if any(char in LINE_BREAKS for char in text):
        raise GrammarError(f"{text!r} holds a line break, which a %ampprofile line cannot carry")
    if commas:
        # An empty id stays empty, so the grammar names the list as written (recs=a,,b).
        return ",".join(quote(part) if part else "" for part in text.split(","))
    if text and SAFE.fullmatch(text):
        return text
    return "'" + text.replace("'", "''") + "'"
