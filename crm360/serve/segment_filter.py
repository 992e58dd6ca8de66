"""A segment's filter: a boolean expression over documented mart columns, parsed and re-written.

The grammar (what ``segments.yml`` may say) is in :mod:`crm360.serve.segments`: columns,
literals, comparisons, ``in``, ``between``, ``like``/``ilike``, ``is [not] null``,
``and``/``or``/``not`` and parentheses, nothing else. :func:`compile_filter` returns SQL
re-written from the parse tree, so what reaches the database is what was validated; every
refusal is a :class:`SegmentError` naming the position and the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from crm360.core.errors import ConfigurationError


class SegmentError(ConfigurationError):
    """A segment definition crm360 cannot accept; the message names the file, segment and reason."""


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|<>|!=|=|<|>)
  | (?P<punct>[(),])
""", re.VERBOSE)
KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false", "between", "like", "ilike"}
# A filter is a condition a person writes and reads, not a program: bounded in length (the longest
# shipped filter has 131 characters) and in depth, counting parentheses and nots (the parser
# recurses a few Python frames a level: 300 parentheses exhausted the interpreter's stack limit).
MAX_FILTER_LENGTH = 4096
MAX_FILTER_DEPTH = 50
NUMERIC_TYPES = ("integer", "bigint", "smallint", "numeric", "double precision", "real", "int", "decimal")


@dataclass(frozen=True)
class _Tok:
    kind: str  # string, number, ident, keyword, op, punct, end
    text: str
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise SegmentError(f"unexpected {text[pos]!r} at position {pos + 1}: a filter holds columns, "
                               "literals, comparisons, in, between, like, is null, and/or/not and parentheses")
        kind = m.lastgroup
        if kind != "ws":
            value = m.group()
            if kind == "ident" and value.lower() in KEYWORDS:
                out.append(_Tok("keyword", value.lower(), pos))
            else:
                out.append(_Tok(kind, value, pos))
        pos = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


class _Parser:
    """Recursive descent over the filter grammar; ``parse`` returns SQL re-written from the tree."""

    def __init__(self, text: str, columns: dict[str, str | None], renamed: list[tuple[str, str]] | None = None):
        self.toks = _tokens(text)
        self.i = 0
        self.columns = columns
        self.depth = 0
        self.renamed = renamed if renamed is not None else []

    def descend(self, tok: _Tok) -> None:
        """One level deeper (a parenthesis or a not), refused past MAX_FILTER_DEPTH."""
        self.depth += 1
        if self.depth > MAX_FILTER_DEPTH:
            raise SegmentError(f"nested more than {MAX_FILTER_DEPTH} deep (parentheses and not) "
                               f"at position {tok.pos + 1}")

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def accept(self, kind: str, text: str | None = None) -> _Tok | None:
        tok = self.peek()
        if tok.kind == kind and (text is None or tok.text == text):
            self.i += 1
            return tok
        return None

    def expect(self, kind: str, text: str, what: str) -> None:
        if not self.accept(kind, text):
            self.fail(f"expected {what}")

    def fail(self, reason: str):
        tok = self.peek()
        found = "the end of the filter" if tok.kind == "end" else repr(tok.text)
        raise SegmentError(f"{reason} at position {tok.pos + 1}, found {found}")

    def parse(self) -> str:
        if self.peek().kind == "end":
            self.fail("a filter must say something")
        out = self.or_expr()
        if self.peek().kind != "end":
            self.fail("expected and, or or the end of the filter")
        return out

    def or_expr(self) -> str:
        parts = [self.and_expr()]
        while self.accept("keyword", "or"):
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"

    def and_expr(self) -> str:
        parts = [self.not_expr()]
        while self.accept("keyword", "and"):
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else "(" + " and ".join(parts) + ")"

    def not_expr(self) -> str:
        tok = self.accept("keyword", "not")
        if tok:
            self.descend(tok)
            inner = self.not_expr()
            self.depth -= 1
            return f"(not {inner})"
        return self.predicate()

    def predicate(self) -> str:
        tok = self.accept("punct", "(")
        if tok:
            self.descend(tok)
            inner = self.or_expr()
            self.expect("punct", ")", "')'")
            self.depth -= 1
            return inner
        left, left_type = self.operand()
        tok = self.peek()
        if tok.kind == "op":
            self.take()
            right, right_type = self.operand()
            if not (left.startswith('"') or right.startswith('"')):
                raise SegmentError(f"a comparison needs a column at position {tok.pos + 1}")
            self.check_types(left_type, right_type, tok)
            op = "<>" if tok.text == "!=" else tok.text
            return f"({left} {op} {right})"
        if self.accept("keyword", "is"):
            negate = bool(self.accept("keyword", "not"))
            what = self.take()
            if what.kind != "keyword" or what.text not in ("null", "true", "false"):
                self.i -= 1
                self.fail("expected null, true or false after is")
            return f"({left} is {'not ' if negate else ''}{what.text})"
        negate = bool(self.accept("keyword", "not"))
        if self.accept("keyword", "in"):
            self.expect("punct", "(", "'(' after in")
            items = [self.literal(left_type)]
            while self.accept("punct", ","):
                items.append(self.literal(left_type))
            self.expect("punct", ")", "')' closing the in list")
            return f"({left} {'not in' if negate else 'in'} ({', '.join(items)}))"
        if self.accept("keyword", "between"):
            low, low_type = self.operand()
            self.expect("keyword", "and", "and in between")
            high, high_type = self.operand()
            self.check_types(left_type, low_type, tok)
            self.check_types(left_type, high_type, tok)
            return f"({left} {'not between' if negate else 'between'} {low} and {high})"
        for op in ("like", "ilike"):
            if self.accept("keyword", op):
                pattern = self.take()
                if pattern.kind != "string":
                    self.i -= 1
                    self.fail(f"expected a quoted pattern after {op}")
                return f"({left} {'not ' if negate else ''}{op} {_string(pattern)})"
        if negate:
            self.fail("expected in, between, like or ilike after not")
        if not left.startswith('"'):
            self.fail("a condition is needed, not a bare literal")
        if left_type not in (None, "boolean"):
            self.fail(f"a comparison is needed: {left} is {left_type}, not a condition by itself")
        return left

    def operand(self) -> tuple[str, str | None]:
        tok = self.take()
        if tok.kind == "ident":
            if self.peek().kind == "punct" and self.peek().text == "(":
                self.i -= 1
                self.fail(f"functions are not allowed ({tok.text})")
            name = tok.text.lower()
            if name not in self.columns and name.endswith(OLD_SUFFIX) and name[:-len(OLD_SUFFIX)] in self.columns:
                # a money column's name before 0.2 (revenue_eur): still read, with a warning from the caller
                self.renamed.append((name, name[:-len(OLD_SUFFIX)]))
                name = name[:-len(OLD_SUFFIX)]
            if name not in self.columns:
                self.i -= 1
                raise SegmentError(f"unknown column {tok.text!r} at position {tok.pos + 1}; "
                                   f"documented columns: {', '.join(sorted(self.columns))}")
            data_type = self.columns[name] or None
            if data_type and data_type.endswith("[]"):
                self.i -= 1
                self.fail(f"{name} holds a list ({data_type}); a filter compares single values")
            return f'"{name}"', data_type
        self.i -= 1
        return self.literal(None), self.literal_type(self.toks[self.i - 1])

    def literal(self, expected: str | None) -> str:
        tok = self.take()
        if tok.kind == "string":
            return _string(tok)
        if tok.kind == "number":
            return tok.text
        if tok.kind == "keyword" and tok.text in ("true", "false", "null"):
            return tok.text
        self.i -= 1
        self.fail("expected a column or a literal")
        raise AssertionError  # unreachable

    @staticmethod
    def literal_type(tok: _Tok) -> str | None:
        return {"string": "text", "number": "numeric"}.get(tok.kind) or (
            "boolean" if tok.text in ("true", "false") else None)

    def check_types(self, left: str | None, right: str | None, tok: _Tok) -> None:
        kinds = {_kind(left), _kind(right)}
        if None in kinds or len(kinds) == 1 or kinds == {"text", "time"}:
            return
        raise SegmentError(f"cannot compare {left} with {right} at position {tok.pos + 1}")


def _kind(data_type: str | None) -> str | None:
    if data_type is None:
        return None
    t = data_type.lower()
    if t.startswith(NUMERIC_TYPES):
        return "number"
    if t.startswith(("date", "timestamp")):
        return "time"
    if t == "boolean":
        return "boolean"
    if t.startswith(("text", "character", "varchar")):
        return "text"
    return t


def _string(tok: _Tok) -> str:
    body = tok.text[1:-1].replace("''", "'")
    if "\\" in body or "\x00" in body:
        raise SegmentError(f"backslashes and NUL characters are not allowed in string literals "
                           f"at position {tok.pos + 1}")
    return "'" + body.replace("'", "''") + "'"


# Money columns were named in euros before 0.2 (revenue_eur); they are currency-neutral now (revenue, in
# the reporting currency). A filter naming the old name of a documented column still works, deprecated.
OLD_SUFFIX = "_eur"


def compile_filter(text: str, columns: dict[str, str | None], renamed: list[tuple[str, str]] | None = None) -> str:
    """The SQL of a segment filter, re-written from its parse tree over ``columns``. A filter longer
    than MAX_FILTER_LENGTH is refused before it is read. Old money column names (``revenue_eur``) are
    read as their new ones, each appended to ``renamed`` as (old, new) for the caller to warn about."""
    if len(text) > MAX_FILTER_LENGTH:
        raise SegmentError(f"longer than {MAX_FILTER_LENGTH:,} characters at position {MAX_FILTER_LENGTH + 1:,} "
                           f"(it has {len(text):,}): split it into segments or say it more simply")
    return _Parser(text, columns, renamed).parse()
