"""CSV exports that no spreadsheet runs, however a reader splits them.

A cell is only safe if it is safe as every reader cuts the file: Python's csv module (quotes
honoured), a reader splitting on physical lines (``str.splitlines``: CR, LF, VT, FF, the
separators U+001C-U+001E, NEL, U+2028, U+2029), and a naive one splitting each line on a list
separator (``,``, ``;`` as spreadsheets in comma-decimal locales do, tab, ``|``) without
honouring quotes. For each, no field may begin (after blanks, quotes and invisible format
characters) with ``=``, ``+``, ``-`` or ``@``, unless it is a plain number or a phone number.
Hypothesis draws hostile rows (formulas, control characters, delimiters, quotes, unicode); the
erasure rewrite of a logged export (crm360.privacy) must leave a file as safe as the export does.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import unicodedata
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm360.privacy import scrub
from crm360.serve import segments

FORMULA = "=+-@"
# what a spreadsheet reads as a number: signed digits, phone-style blanks, an exponent
PLAIN = re.compile(r"[+-]?[0-9][0-9 .]*(?:[eE][+-]?[0-9]+)?")
NAIVE_SEPARATORS = re.compile(r"[,;\t|]")


def _lead(field: str) -> str:
    """The field as a lenient reader sees its start: without blanks, quotes, format characters."""
    i = 0
    while i < len(field) and (field[i].isspace() or field[i] == '"' or unicodedata.category(field[i]) == "Cf"):
        i += 1
    return field[i:]


def _starts_a_formula(field: str) -> bool:
    return _lead(field)[:1] in set(FORMULA) and not PLAIN.fullmatch(field.strip().strip('"').strip())


def _visible(text: str) -> str:
    """What a person reads: no blanks, no control characters, no neutralising apostrophes."""
    return "".join(c for c in text if not c.isspace() and unicodedata.category(c) != "Cc" and c != "'")


def _check(text: str, rows: list[list]) -> None:
    """Every reader's view of ``text`` (the CSV of ``rows``) is safe and keeps the visible text."""
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert len(parsed) == len(rows)
    for written, values in zip(parsed, rows, strict=True):
        assert len(written) == len(values)
        for cell, value in zip(written, values, strict=True):
            assert not _starts_a_formula(cell), (value, cell)
            assert not any(unicodedata.category(c) == "Cc" or c in "\u2028\u2029" for c in cell), (value, cell)
            assert _visible(cell) == _visible(segments.csv_cell(value)) == _visible(_plain(value)), (value, cell)
            assert segments.csv_cell(cell) == cell  # a rewrite of the file changes nothing
    lines = text.splitlines()
    assert len(lines) == len(rows), "a cell spans physical lines"
    for line in lines:
        assert not _starts_a_formula(NAIVE_SEPARATORS.split(line, 1)[0]), line
        for field in NAIVE_SEPARATORS.split(line):
            assert not _starts_a_formula(field), (line, field)


def _plain(value) -> str:
    """The value as text, the way a person would read it (None is empty, booleans in words)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


HOSTILE = st.sampled_from([
    "=", "+", "-", "@", "|", "%", "'", '"', ",", ";", " ", "\t", "\r", "\n", "\r\n", "\x0b", "\x0c",
    "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\u2028", "\u2029", "\x00", "\x07", "\x1b", "\x7f", "\x9b",
    "\u00a0", "\u200b", "\ufeff", "\u202e", "=cmd|' /C calc'!A0", '=HYPERLINK("http://x.invalid","y")',
    "+31 20 123 4567", "-12.5", "1", "SUM(A1:A9)", "Zoë", "北京", "😀", "é", "Amsterdam",
])
TEXTS = st.lists(st.one_of(HOSTILE, st.text(max_size=4)), max_size=8).map("".join)
VALUES = st.one_of(TEXTS, st.text(), st.none(), st.booleans(), st.integers(),
                   st.decimals(allow_nan=False, allow_infinity=False))
ROWS = st.lists(st.lists(VALUES, min_size=1, max_size=6), min_size=1, max_size=6)
# reproducible (the same examples on every machine) and keeping nothing between runs, as test_properties
EXAMPLES = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@EXAMPLES
@given(ROWS)
def test_no_reader_sees_a_cell_or_line_that_starts_a_formula(rows):
    out = io.StringIO(newline="")
    assert segments.write_rows(out, rows) == len(rows)
    _check(out.getvalue(), rows)


@EXAMPLES
@given(ROWS)
def test_rewriting_an_export_keeps_it_safe(rows):
    """What crm360.privacy does to a logged export: read it with csv, write the rows it keeps."""
    first = io.StringIO(newline="")
    segments.write_rows(first, rows)
    again = io.StringIO(newline="")
    segments.write_rows(again, list(csv.reader(io.StringIO(first.getvalue(), newline=""))))
    assert again.getvalue() == first.getvalue()


def test_control_characters_become_blanks_or_go(tmp_path):
    assert segments.csv_cell("line one\r\nline two\tend") == "line one  line two end"
    assert segments.csv_cell("bell\x07 nul\x00 esc\x1b del\x7f csi\x9b") == "bell nul esc del csi"
    assert segments.csv_cell("x\n=cmd|' /C calc'!A0") == "x =cmd|' /C calc'!A0"
    assert segments.csv_cell("\n=1+1") == "' =1+1"  # a blank ahead of a formula still starts it
    assert segments.csv_cell('"=1+1') == "'\"=1+1"
    assert segments.csv_cell("\u200b@SUM(A1)") == "'\u200b@SUM(A1)"
    # a list separator starts a cell for a reader that splits on it
    assert segments.csv_cell("Smith;=HYPERLINK(1)") == "Smith;'=HYPERLINK(1)"
    assert segments.csv_cell("a, -2+3") == "a,' -2+3"
    assert segments.csv_cell("a|@x") == "a|'@x"
    # numbers and phone numbers stay what they are
    assert segments.csv_cell("+31 20 123 4567") == "+31 20 123 4567"
    assert segments.csv_cell("-12.5") == "-12.5"
    assert segments.csv_cell(Decimal("-5E+3")) == "-5E+3"
    assert segments.csv_cell("Smith, John") == "Smith, John"


def test_the_erasure_rewrite_of_an_export_neutralises_it(db, tmp_path):
    """An export on disk with hostile cells (written by an older crm360, or changed since) is
    rewritten without the erased customer and as safe as a new export, on the real audit log."""
    export = tmp_path / "exports" / "list.csv"  # in the export folder: the only files an erasure rewrites
    export.parent.mkdir()
    rows = [list(segments.MEMBER_COLUMNS[:4]),
            ["s", "k_keep", "x\n=cmd|' /C calc'!A0", "a;=HYPERLINK(\"http://x.invalid\")"],
            ["s", "k_gone", "Gone Person", "gone@example.com"],
            ["s", "k_tab", "\t@SUM(A1)", "\r-1+2"]]
    with export.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)  # as the file was left, unneutralised
    with export.open(encoding="utf-8", newline="") as f:
        read = list(csv.reader(f))  # what a reader makes of it (the bare CR ends a row)
    with db.connect() as conn:
        conn.execute("""insert into audit.segment_exports (exported_by, segment_name, segment_version, row_count,
                                                           destination, format)
                        values ('test', 's', 'v1', 3, %s, 'csv')""", (str(export),))
        scrubbed = scrub.scrub_exports(conn, {hashlib.sha256(b"k_gone").hexdigest()}, export.parent)
        conn.commit()
    assert scrubbed.rows_removed == {str(export.resolve()): 1} and scrubbed.problems == []
    text = export.read_text(encoding="utf-8")
    assert "k_gone" not in text and "gone@example.com" not in text
    _check(text, [r for r in read if "k_gone" not in r])
    assert "'=HYPERLINK" in text and "' @SUM(A1)" in text
