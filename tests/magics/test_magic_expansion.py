"""Ids are sent exactly as given (issue 9, section 6): what the emulator receives for variables, quotes and batches.

Every test runs the real magic in a real IPython shell and asserts on the emulator's request log: the id the
server got, or a one-line ``UsageError`` naming the problem with nothing sent.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError

from amp_profile_magic.emulator import Emulator

from .helpers import api_requests, magics_of


def sent(emulator: Emulator) -> list[dict[str, str]]:
    """The query parameters of every API request the emulator answered, oldest first."""
    return [entry.params for entry in api_requests(emulator)]


def user_ids(emulator: Emulator) -> list[str]:
    """The user_id of every API request, oldest first."""
    return [params["user_id"] for params in sent(emulator)]


def refused(shell: Any, emulator: Emulator, line: str, cell: str | None = None) -> str:
    """Run the magic expecting a UsageError; check it is one line and nothing was sent; return its message."""

    def call() -> Any:
        if cell is None:
            return shell.run_line_magic("ampprofile", line)
        return shell.run_cell_magic("ampprofile", line, cell)

    with pytest.raises(UsageError) as raised:
        call()
    message = str(raised.value)
    assert "\n" not in message
    assert api_requests(emulator) == []
    return message


@pytest.fixture(autouse=True)
def _panels_only(magics: Any) -> None:
    """Unknown users (most ids here) show their panel and return, so a test can look at what was sent."""
    magics.raise_errors = False


# -- a value that comes from a variable is one id, exactly as the variable holds it ------------------------------


@pytest.mark.parametrize("form", ["user={v}", "user=$v"])
def test_a_value_with_grammar_words_cannot_add_tokens(shell: Any, emulator: Emulator, form: str) -> None:
    """v = "12345 props -o hijacked": user={v} sends that whole text as the user id; no props, nothing bound."""
    shell.user_ns["v"] = "12345 props -o hijacked"
    shell.run_line_magic("ampprofile", f"{form} cohorts")
    assert sent(emulator) == [{"user_id": "12345 props -o hijacked", "get_cohort_ids": "true"}]
    assert "hijacked" not in shell.user_ns


def test_a_value_cannot_add_a_device(shell: Any, emulator: Emulator) -> None:
    """v = "alice device=ffff" sends exactly that as the user id and no device_id at all."""
    shell.user_ns["v"] = "alice device=ffff"
    shell.run_line_magic("ampprofile", "user={v} cohorts")
    assert sent(emulator) == [{"user_id": "alice device=ffff", "get_cohort_ids": "true"}]


def test_a_value_with_a_space_is_one_id(shell: Any, emulator: Emulator) -> None:
    """v = "john smith" is looked up as the one id 'john smith', not refused as keyword 'smith'."""
    shell.user_ns["v"] = "john smith"
    shell.run_line_magic("ampprofile", "user={v} device=$v cohorts")
    assert sent(emulator) == [{"user_id": "john smith", "device_id": "john smith", "get_cohort_ids": "true"}]


@pytest.mark.parametrize("value", ["o'brien", 'say "hi"', "a\\b", "a\\'b\\\"c", "{x}", "$x", "  ab  ", "1,2", "#7"])
def test_quotes_backslashes_and_spaces_in_a_value_are_kept(shell: Any, emulator: Emulator, value: str) -> None:
    """Quotes, backslashes, braces, dollars, commas and surrounding spaces in a variable reach the server as held."""
    shell.user_ns.update(v=value, x="EXPANDED")
    shell.run_line_magic("ampprofile", "user={v} cohorts")
    shell.run_line_magic("ampprofile", "device=$v cohorts")
    assert sent(emulator) == [
        {"user_id": value, "get_cohort_ids": "true"},
        {"device_id": value, "get_cohort_ids": "true"},
    ]


def test_expressions_and_surrounding_text_make_one_id(shell: Any, emulator: Emulator) -> None:
    """{expr} takes any expression (spaces and quotes inside the braces too); text around it joins the same id."""
    shell.user_ns.update(n=5, people={"first name": "ann lee"}, ids=["12345"])
    shell.run_line_magic("ampprofile", "user=u-{n}-x cohorts")
    shell.run_line_magic("ampprofile", "user={people['first name']} cohorts")
    shell.run_line_magic("ampprofile", "user={ids[0]} recs={'testRecId'},testRecId2")
    assert user_ids(emulator) == ["u-5-x", "ann lee", "12345"]
    assert sent(emulator)[2]["rec_id"] == "testRecId,testRecId2"


def test_dollar_takes_a_name_only(shell: Any, emulator: Emulator) -> None:
    """$a.b is a's value followed by the literal '.b': $name never evaluates attributes or calls."""
    shell.user_ns["a"] = "12345"
    shell.run_line_magic("ampprofile", "user=$a.b cohorts")
    assert user_ids(emulator) == ["12345.b"]


def test_doubled_dollar_and_braces_are_literal(shell: Any, emulator: Emulator) -> None:
    """$$, {{ and }} send a literal $, { and }."""
    shell.run_line_magic("ampprofile", "user=$$x{{y}} cohorts")
    assert user_ids(emulator) == ["$x{y}"]


def test_ids_from_variables_keep_their_values_in_lists(shell: Any, emulator: Emulator) -> None:
    """recs={a},{b} sends two rec ids, each exactly its variable's value."""
    shell.user_ns.update(a="testRecId", b="testRecId2")
    shell.run_line_magic("ampprofile", "user=12345 recs={a},$b")
    assert sent(emulator)[0]["rec_id"] == "testRecId,testRecId2"


def test_numbers_from_variables_are_exact_integers(shell: Any, emulator: Emulator) -> None:
    """An int (also numpy's) or a whole float below 2**53 in {…} sends its digits."""
    shell.user_ns.update(i=12345, j=np.int64(12345), k=12345.0)
    for name in "ijk":
        # --refresh: each lookup must reach the emulator, not the local store's answer to the first.
        shell.run_line_magic("ampprofile", f"user={{{name}}} cohorts --refresh")
    assert user_ids(emulator) == ["12345", "12345", "12345"]


def test_values_are_looked_up_in_the_callers_scope(shell: Any, emulator: Emulator) -> None:
    """Inside a function, {name} sees the function's locals, as IPython's own expansion did."""
    source = "def lookup():\n    local_id = 'in-function'\n    _ = %ampprofile user={local_id} cohorts\nlookup()"
    assert shell.run_cell(source).success
    assert user_ids(emulator) == ["in-function"]


def test_out_name_from_a_variable(shell: Any, emulator: Emulator) -> None:
    """-o {name} binds the result to the name the variable holds."""
    shell.user_ns["name"] = "bound"
    shell.run_line_magic("ampprofile", "user=12345 cohorts -o {name}")
    assert list(shell.user_ns["bound"]["cohort_id"]) == ["cohort1", "cohort3", "cohort7"]


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("user={v} cohorts", "user={v}: {v} is missing"),
        ("user={ids} cohorts", "{ids} is a list, not one id"),
        ("user={flag} cohorts", "{flag} = True is a boolean"),
        ("user={half} cohorts", "{half} = 2.5 is not a whole number"),
        ("user={big} cohorts", "cannot hold an exact integer id"),
        ("user={nan} cohorts", "{nan} is missing"),
        ("user={empty} cohorts", "user={empty}: the id is empty"),
        ("user={blank} cohorts", "user={blank}: the id is blank"),
        ("user=12345 recs={pair}", "{pair} holds a comma"),
        ("user=12345 recs={padded}", "' a' starts or ends with a space"),
        ("user={1/0} cohorts", "user={1/0}: ZeroDivisionError: division by zero"),
    ],
)
def test_values_that_are_not_one_sendable_id_are_refused(shell: Any, emulator: Emulator, line: str, named: str) -> None:
    """None, a list, a bool, a fraction, a float >= 2**53, NaN, '', '  ', a comma in a list id: UsageError."""
    shell.user_ns.update(
        v=None,
        ids=["a"],
        flag=True,
        half=2.5,
        big=12345678901234567890.0,
        nan=float("nan"),
        empty="",
        blank="   ",
        pair="a,b",
        padded=" a",
    )
    assert named in refused(shell, emulator, line)


# -- an undefined name anywhere in a value is a UsageError naming it ---------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "user={undefined} cohorts",
        "user=$undefined cohorts",
        "user={undefined}-x cohorts",
        "user=x-$undefined cohorts",
        "user=12345 recs=$undefined",
        "user=12345 recs=testRecId,{undefined}",
        "user=12345 cohorts -o $undefined",
    ],
)
def test_an_undefined_name_anywhere_is_a_usage_error_naming_it(shell: Any, emulator: Emulator, line: str) -> None:
    """An undefined name in any part of any value is refused, naming the name and the token; nothing is sent."""
    message = refused(shell, emulator, line)
    assert "name 'undefined' is not defined" in message
    assert message.startswith("%ampprofile: ")


# -- a literal value is sent as written, or refused clearly ------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "user_id"),
    [
        ("user='  ab  ' cohorts", "  ab  "),
        ("user='john smith' cohorts", "john smith"),
        ('user="o\'brien" cohorts', "o'brien"),
        ("user='o''brien' cohorts", "o'brien"),
        ("user='say \"hi\"' cohorts", 'say "hi"'),
        ('user="say ""hi""" cohorts', 'say "hi"'),
        ("user=a\\b cohorts", "a\\b"),
        ("user='a\\' cohorts", "a\\"),
        ("user='{x} $x' cohorts", "{x} $x"),
        ("user='1,2' cohorts", "1,2"),
        ("user=a=b cohorts", "a=b"),
        ("user=50% cohorts", "50%"),
        ("user=Жé漢 cohorts", "Жé漢"),
        ("user='a\u00a0b' cohorts", "a\u00a0b"),
    ],
)
def test_literal_values_are_sent_as_written(shell: Any, emulator: Emulator, line: str, user_id: str) -> None:
    """Quoted text is literal (spaces, the other quote, a doubled quote, braces, dollars); a backslash is plain."""
    shell.user_ns["x"] = "EXPANDED"
    shell.run_line_magic("ampprofile", line)
    assert user_ids(emulator) == [user_id]


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("user=o'brien cohorts", "no closing ' (quotes go around a whole value"),
        ('user="say "hi"" cohorts', "a quote goes around a whole value"),
        ("user=ab'cd' cohorts", "a quote goes around a whole value"),
        ("user='ab cohorts", "no closing '"),
        (
            "user=john smith",
            "unknown keyword 'smith' (sections: recs, props, cohorts, comps, propensity); if it belongs to the value "
            "before it, quote both: user='john smith'",
        ),
        ("user=1,2 cohorts", "one id per user="),
        ("user=a$ cohorts", "$ must be followed by a variable name"),
        ("user=$1 cohorts", "$ must be followed by a variable name"),
        ("user=a} cohorts", "a lone }"),
        ("user={x cohorts", "no matching }"),
        ("user={} cohorts", "empty {}"),
        ("user=a\u00a0b cohorts", "U+00A0"),
        ("user='' cohorts", "the id is empty"),
        ("user='   ' cohorts", "the id is blank"),
        ("user=12345 recs=' a',b", "starts or ends with a space"),
        ("user=12345 recs='a,b'", "holds a comma"),
        ("{x} cohorts", "quotes and variables go in values"),
        ("user=12345 'cohorts'", "quotes and variables go in values"),
        ("'user'=1 cohorts", "write the keyword plainly"),
    ],
)
def test_literal_values_that_would_change_are_refused(shell: Any, emulator: Emulator, line: str, named: str) -> None:
    """A misplaced quote, a lone $ or }, a no-break space, a blank id or a comma where it splits: a UsageError."""
    shell.user_ns["x"] = "12345"
    assert named in refused(shell, emulator, line)


# -- %%ampprofile: the header expands like the line, the body keeps the quoting rules without expansion ---------


def test_cell_body_quoting_rules(shell: Any, emulator: Emulator) -> None:
    """Body lines: bare ids, quoted ids with spaces or quotes, user=/device= pairs and # comments, sent exactly."""
    shell.user_ns["name"] = "bound"
    body = "\n".join(
        [
            "# a comment line",
            "'john smith'",
            "12345   # a trailing comment",
            "user=\"o'brien\" device='a b'",
            "a\\b",
            "'{x}'",
            "   ",
            "device='  dev  '",
        ]
    )
    shell.run_cell_magic("ampprofile", "cohorts -o {name}", body)
    assert sorted(sent(emulator), key=str) == sorted(
        [
            {"user_id": "john smith", "get_cohort_ids": "true"},
            {"user_id": "12345", "get_cohort_ids": "true"},
            {"user_id": "o'brien", "device_id": "a b", "get_cohort_ids": "true"},
            {"user_id": "a\\b", "get_cohort_ids": "true"},
            {"user_id": "{x}", "get_cohort_ids": "true"},
            {"device_id": "  dev  ", "get_cohort_ids": "true"},
        ],
        key=str,
    )
    assert "bound" in shell.user_ns


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("12345\n{uid}", "line 2: {uid}: $, { and } are expanded only on the magic's line"),
        ("$uid", "line 1: $uid: $, { and } are expanded only"),
        ("o'brien", "line 1: o'brien: no closing '"),
        ("john smith", "line 1: 'smith' is a second bare id; one lookup per line, and an id with spaces is quoted"),
        (
            "user=a b  # who",
            "line 1: 'b' is a second bare id; one lookup per line, and an id with spaces is quoted whole: user='a b'",
        ),
        ("12345\n\u200b678", "line 2: '\\u200b678': holds U+200B, an invisible character"),
        ("1,2", "line 1: user=1,2: one id per user="),
        ("user='   '", "line 1: user='   ': the id is blank"),
        ("ab'c'", "line 1: ab'c': a quote goes around a whole value"),
        # Words already quoted, or a key=: no example, which would quote the quotes and send a garbage id.
        ("user='a' device='b' c", "line 1: 'c' is a second bare id; one lookup per line, and an id with spaces is"),
        ("'$weird' -o", "line 1: '-o' is a second bare id; one lookup per line, and an id with spaces is quoted whole"),
    ],
)
def test_cell_body_refuses_what_it_would_change(shell: Any, emulator: Emulator, body: str, named: str) -> None:
    """An expansion, a misplaced quote, two bare words or an unquoted comma in the body is a UsageError."""
    shell.user_ns["uid"] = "12345"
    message = refused(shell, emulator, "cohorts", body)
    assert named in message
    if "second bare id" in named:
        assert "''" not in message, "a suggestion quoted quotes again"


def test_a_byte_order_mark_opening_the_body_is_not_part_of_the_first_id(shell: Any, emulator: Emulator) -> None:
    """Ids pasted from a file that starts with a byte-order mark are sent without it."""
    shell.run_cell_magic("ampprofile", "cohorts", "\ufeff12345\nuser-00002\n")
    assert sorted(entry["user_id"] for entry in sent(emulator)) == ["12345", "user-00002"]


def test_magic_lines_take_a_trailing_comment(shell: Any, emulator: Emulator) -> None:
    """A word starting with # ends the line, as in the README's examples; a # inside a value or quoted is kept."""
    shell.user_ns["ids"] = ["12345"]
    shell.run_line_magic("ampprofile", "user=12345 cohorts   # the documented example")
    shell.run_line_magic("ampprofile", "user=a#b cohorts #c")
    shell.run_line_magic("ampprofile", "user='# quoted' cohorts")
    shell.run_cell_magic("ampprofile", "cohorts  # one per line", "user-00002")
    shell.run_line_magic("ampprofile", "--users ids props  # from a list")
    assert [entry["user_id"] for entry in sent(emulator)] == ["12345", "a#b", "# quoted", "user-00002", "12345"]


def test_the_other_magics_take_a_trailing_comment(shell: Any, emulator: Emulator, capsys: Any) -> None:
    """%ampprofile_store, %ampprofile_cassette and %ampprofile_emulator read a trailing # comment as a comment."""
    shell.run_line_magic("ampprofile_store", "  # where is it?")
    shell.run_line_magic("ampprofile_cassette", "# which mode?")
    shell.run_line_magic("ampprofile_emulator", "--stop   # back to the previous endpoint")
    printed = capsys.readouterr().out
    assert "Local profile store" in printed
    assert "Cassette: off" in printed
    assert "Stopped the bundled emulator" in printed or "is not running" in printed


def test_the_out_name_is_bound_as_python_reads_it(shell: Any, emulator: Emulator) -> None:
    """-o with a name Python normalises (full-width letters) binds the name that typing it reaches."""
    shell.run_line_magic("ampprofile", "user=12345 cohorts -o \uff46\uff4f\uff4f")
    assert "foo" in shell.user_ns
    assert "\uff46\uff4f\uff4f" not in shell.user_ns
    assert shell.run_cell("foo.shape").result == (3, 3)


def test_an_expression_error_quoting_the_key_is_masked(shell: Any, emulator: Emulator, monkeypatch: Any) -> None:
    """What a user's expression raised is shown without the key, the configured one or the environment's."""
    canary = "CANARY-EXPR-1f9e"
    monkeypatch.setenv("AMPLITUDE_SECRET_KEY", canary)
    shell.user_ns["configured"] = magics_of(shell).client.api_key.reveal()
    for line in (
        "user={int(__import__('os').environ['AMPLITUDE_SECRET_KEY'])} props",
        "--users int(__import__('os').environ['AMPLITUDE_SECRET_KEY']) props",
        "user={int(configured)} props",
        "--users int(configured) props",
    ):
        message = refused(shell, emulator, line)
        assert "invalid literal for int()" in message
        assert "********" in message
        assert canary not in message
        assert shell.user_ns["configured"] not in message


def test_cell_header_undefined_name_is_refused(shell: Any, emulator: Emulator) -> None:
    """%%ampprofile's header expands like the line: an undefined name is a UsageError naming it."""
    assert "name 'nowhere' is not defined" in refused(shell, emulator, "recs=$nowhere", "12345")


# -- --users: numpy and nullable integers, missing values and inexact floats -------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        np.array([12345, 7], dtype=np.int64),
        np.array([12345, 7], dtype=np.uint32),
        pd.Series([12345, 7], dtype="Int64"),
        pd.array([12345, 7], dtype="Int64"),
        pd.Series([12345.0, 7.0]),
        [np.int32(12345), 7],
    ],
    ids=["int64-array", "uint32-array", "Int64-Series", "Int64-array", "float-Series", "numpy-scalars"],
)
def test_users_accepts_numpy_and_nullable_integers(shell: Any, emulator: Emulator, value: object) -> None:
    """Integer arrays, nullable Int64 and whole floats below 2**53 send their digits, never '12345.0'."""
    shell.user_ns["ids"] = value
    shell.run_line_magic("ampprofile", "--users ids cohorts")
    assert sorted(user_ids(emulator)) == ["12345", "7"]


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (pd.Series([12345, None, 7], dtype="Int64"), "ids: the id at position 1 is missing"),
        (pd.array([None, 12345], dtype="Int64"), "ids: the id at position 0 is missing"),
        (pd.Series(["a", pd.NA], dtype="string"), "ids: the id at position 1 is missing"),
        (np.array([1.0, np.nan]), "ids: the id at position 1 is missing"),
        ([12345678901234567890.0], "position 0 = 1.2345678901234567e+19 is a float at or above 2**53"),
        ([float(2**53)], "at or above 2**53"),
        (["12345", "  "], "ids: the id at position 1 is blank"),
        (["", "12345"], "ids: the id at position 0 is empty"),
        ([b"12345"], "position 0 is a bytes"),
        ([True], "position 0 = True is a boolean"),
        ([np.bool_(True)], "is a boolean"),
        (np.array([7, 16777217], dtype=np.float32), "is a float at or above 2**24"),
        (pd.Series([20000001.0, 7.0], dtype="float32"), "position 0 = 20000000.0 is a float at or above 2**24"),
        (pd.Series([7.0, 20000001.0], dtype="Float32"), "is a float at or above 2**24"),
        (np.array([7, 4097], dtype=np.float16), "is a float at or above 2**11"),
    ],
    ids=[
        *("Int64-NA", "IntegerArray-NA", "string-NA", "float-NaN", "huge-float", "2**53"),
        *("blank", "empty", "bytes", "bool", "numpy-bool"),
        *("float32-array", "float32-Series", "Float32-Series", "float16-array"),
    ],
)
def test_users_refuses_what_it_cannot_send_exactly(shell: Any, emulator: Emulator, value: object, named: str) -> None:
    """A missing value names its position and is never sent as 'nan'; floats past their exact integers (2**53, or
    2**24 for float32, which has already rounded 16777217) and blank ids are refused."""
    shell.user_ns["ids"] = value
    assert named in refused(shell, emulator, "--users ids cohorts")


def test_users_ids_are_sent_exactly(shell: Any, emulator: Emulator) -> None:
    """Ids in a --users list keep spaces, quotes and commas (user and device ids are single-valued)."""
    ids = ["  ab  ", "o'brien", "a,b", "x y", "{z}"]
    shell.user_ns["ids"] = ids
    shell.run_line_magic("ampprofile", "--users ids cohorts")
    assert sorted(user_ids(emulator)) == sorted(ids)


def test_float32_just_below_two_to_the_24_is_exact(shell: Any, emulator: Emulator) -> None:
    """A float32 column below 2**24 holds its integers exactly and is sent as their digits."""
    shell.user_ns["ids"] = pd.Series([2**24 - 1, 7], dtype="float32")
    shell.run_line_magic("ampprofile", "--users ids cohorts")
    assert sorted(user_ids(emulator)) == sorted([str(2**24 - 1), "7"])


def test_float_just_below_two_to_the_53_is_exact(shell: Any, emulator: Emulator) -> None:
    """2**53 - 1 as a float is still an exact integer id and is sent as its digits."""
    shell.user_ns["ids"] = [float(2**53 - 1)]
    shell.run_line_magic("ampprofile", "--users ids cohorts")
    assert user_ids(emulator) == [str(2**53 - 1)]


@pytest.mark.parametrize("expression", ["df['a b']", "\"df['a b']\"", 'df["a b"]', "'df[\"a b\"]'"])
def test_users_expressions_with_quoted_keys_still_work(shell: Any, emulator: Emulator, expression: str) -> None:
    """--users df['a b'] (bare or wholly quoted) is evaluated as written: quotes inside a Python expression stay."""
    shell.user_ns["df"] = pd.DataFrame({"a b": ["12345", "user-00001"]})
    shell.run_line_magic("ampprofile", f"--users {expression} cohorts")
    assert sorted(user_ids(emulator)) == ["12345", "user-00001"]


def test_users_expression_sees_the_callers_locals(shell: Any, emulator: Emulator) -> None:
    """--users inside a function evaluates against the function's locals."""
    source = "def batch():\n    mine = ['12345']\n    _ = %ampprofile --users mine cohorts\nbatch()"
    assert shell.run_cell(source).success
    assert user_ids(emulator) == ["12345"]


# -- IPython's own expansion is off, on IPython 8.12 and 9.x alike -----------------------------------------------


def test_ipython_does_not_expand_the_line_first(shell: Any) -> None:
    """The registered magics opt out of IPython's var_expand (no_var_expand) and receive the caller's scope."""
    from IPython.core.magic import MAGIC_NO_VAR_EXPAND_ATTR

    for kind in ("line", "cell"):
        magic = shell.magics_manager.magics[kind]["ampprofile"]
        assert getattr(magic, MAGIC_NO_VAR_EXPAND_ATTR, False)
        assert getattr(magic, "needs_local_scope", False)
    assert getattr(shell.magics_manager.magics["line"]["ampprofile_form"], MAGIC_NO_VAR_EXPAND_ATTR, False)
