"""Segment definitions: what a filter may say, and the errors for what it may not (no database)."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, make_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from crm360.cli import main
from crm360.serve import segments
from crm360.serve.segments import SegmentError, compile_filter

COLUMNS = {"value_tier": "text", "revenue": "numeric", "lifecycle_stage": "text", "email": "text",
           "has_marketing_consent": "boolean", "last_order_at": "timestamptz", "complaints": "integer",
           "emails": "text[]"}


@pytest.mark.parametrize("text, expected", [
    ("value_tier = 'top'", "(\"value_tier\" = 'top')"),
    ("VALUE_TIER in ('top','big') AND revenue >= 100",
     "((\"value_tier\" in ('top', 'big')) and (\"revenue\" >= 100))"),
    ("not (complaints > 0 or email is null)", "(not ((\"complaints\" > 0) or (\"email\" is null)))"),
    ("revenue between 10 and 20.5", "(\"revenue\" between 10 and 20.5)"),
    ("email not ilike '%@example.com'", "(\"email\" not ilike '%@example.com')"),
    ("has_marketing_consent", "\"has_marketing_consent\""),
    ("has_marketing_consent is not true and last_order_at < '2026-01-01'",
     "((\"has_marketing_consent\" is not true) and (\"last_order_at\" < '2026-01-01'))"),
    ("lifecycle_stage <> 'o''brien'", "(\"lifecycle_stage\" <> 'o''brien')"),
    ("complaints != 0", "(\"complaints\" <> 0)"),
])
def test_filters_are_rewritten_from_their_parse_tree(text, expected):
    assert compile_filter(text, COLUMNS) == expected


@pytest.mark.parametrize("text, reason", [
    ("value_tier = 'top'; drop table marts.customer_360", "unexpected ';'"),
    ("value_tier = 'top' -- comment", "unexpected '-'"),
    ("pg_sleep(10) is null", "functions are not allowed (pg_sleep)"),
    ("value_tier in (select value_tier from customer_360)", "expected a column or a literal"),
    ("email in (select email from raw.sales_customers)", "unexpected '.'"),
    ("ssn = '1'", "unknown column 'ssn'"),
    ("value_tier = 'top' union select 1", "expected and, or or the end of the filter at position 20, found 'union'"),
    ("revenue::text = '1'", "unexpected ':'"),
    ("revenue = 'a lot'", "cannot compare numeric with text"),
    ("has_marketing_consent = 1", "cannot compare boolean with numeric"),
    ("revenue", "a comparison is needed"),
    ("1 = 1", "a comparison needs a column"),
    ("'yes'", "a condition is needed"),
    ("", "a filter must say something"),
    ("value_tier in ()", "expected a column or a literal"),
    ("(value_tier = 'top'", "expected ')'"),
    ("value_tier = 'top' value_tier", "expected and, or or the end"),
    ("email like value_tier", "expected a quoted pattern"),
    ("email = 'a\\b'", "backslashes"),
    ("emails = 'a@example.com'", "emails holds a list (text[]); a filter compares single values"),
])
def test_anything_but_a_filter_over_documented_columns_is_refused(text, reason):
    with pytest.raises(SegmentError) as exc:
        compile_filter(text, COLUMNS)
    assert reason in str(exc.value)


def test_the_shipped_segments_are_valid_and_versioned():
    found = segments.load(REPO / "segments.yml")
    names = [s.name for s in found]
    assert names == ["top_customers_at_risk", "upgrade_candidates", "dormant_prospects", "unhappy_high_value",
                     "web_active_prospects", "daily_call_list"]
    assert all(s.description and len(s.version) == 12 for s in found)
    assert len({s.version for s in found}) == len(found)
    call_list = found[-1]
    assert call_list.source == "customer_call_list" and call_list.filter_sql == "true"


def test_a_changed_filter_is_a_new_version(tmp_path):
    path = tmp_path / "segments.yml"
    path.write_text("segments:\n  - {name: a, description: d, filter: \"revenue > 1\"}\n")
    before = segments.load(path)[0].version
    path.write_text("segments:\n  - {name: a, description: other words, filter: \"revenue  >  1\"}\n")
    assert segments.load(path)[0].version == before  # same meaning, same version
    path.write_text("segments:\n  - {name: a, description: d, filter: \"revenue > 2\"}\n")
    assert segments.load(path)[0].version != before


@pytest.mark.parametrize("body, reason", [
    ("- just a list", "expected one key, 'segments'"),
    ("segments:\n  - {name: A-b, description: d, filter: \"revenue_tier = 'top'\"}", "name must be lower-case"),
    ("segments:\n  - {name: a, filter: \"revenue_tier = 'top'\"}", "segment 'a': a description is required"),
    ("segments:\n  - {name: a, description: d, filter: \"revenue_tier = 'top'\", sql: x}", "unknown key(s) sql"),
    ("segments:\n  - {name: a, description: d, filter: \"x = 1\"}", "segment 'a': filter: unknown column 'x'"),
    ("segments:\n  - {name: a, description: d, source: raw.sales_customers, filter: \"true\"}", "source must be"),
    ("segments:\n  - {name: a, description: d, filter: \"revenue_tier = 'top'\"}\n"
     "  - {name: a, description: d, filter: \"revenue_tier = 'big'\"}", "segment 'a': defined twice"),
    ("segments:\n  - {name: a, description: d}", "filter must be a string"),
    ("segments: [", "not valid YAML"),
])
def test_bad_segment_files_are_named_with_segment_and_reason(tmp_path, body, reason):
    path = tmp_path / "segments.yml"
    path.write_text(body)
    with pytest.raises(SegmentError) as exc:
        segments.load(path)
    assert str(path) in str(exc.value) and reason in str(exc.value)


def test_cli_validate_reports_a_bad_file_in_one_line(tmp_path, capsys):
    path = tmp_path / "segments.yml"
    path.write_text("segments:\n  - {name: a, description: d, filter: \"email = 'x'; delete from raw.web_events\"}\n")
    assert main(["segments", "validate", "--file", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{path}: segment 'a': filter: unexpected ';'" in err


@pytest.mark.parametrize("value, cell", [
    ("=HYPERLINK(\"http://evil\")", "'=HYPERLINK(\"http://evil\")"),
    ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
    ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
    ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
    ("\t=1", "' =1"),  # a tab is a blank: it would start a cell for a reader splitting on tabs
    ("+31201234567", "+31201234567"),  # a phone number stays a phone number
    ("Amsterdam", "Amsterdam"),
    (None, ""),
    (True, "true"),
])
def test_csv_cells_never_start_a_formula(value, cell):
    assert segments.csv_cell(value) == cell
    buf = io.StringIO()
    csv.writer(buf).writerow([segments.csv_cell(value)])
    assert next(csv.reader(io.StringIO(buf.getvalue())))[0] == cell


def test_documented_columns_come_from_the_marts_yaml():
    cols = segments.documented_columns()
    assert {"value_tier", "lifecycle_stage", "has_marketing_consent", "predicted_clv"} <= set(cols["customer_360"])
    assert "call_rank" in cols["customer_call_list"]
    assert Path(REPO / "segments.yml").exists()


# ---------------------------------------------------------------- bounds, and the parser under fuzzing

@pytest.mark.parametrize("text, position", [
    ("(" * 300 + "email is null" + ")" * 300, 51),
    ("not " * 300 + "email is null", 201),
    ("not (" * 30 + "email is null" + ")" * 30, 126),
])
def test_deep_nesting_is_refused_with_its_position(text, position):
    with pytest.raises(SegmentError) as exc:
        compile_filter(text, COLUMNS)
    assert f"nested more than {segments.MAX_FILTER_DEPTH} deep (parentheses and not) at position {position}" \
        in str(exc.value)


def test_nesting_up_to_the_bound_is_a_filter():
    depth = segments.MAX_FILTER_DEPTH
    assert compile_filter("(" * depth + "email is null" + ")" * depth, COLUMNS) == "(\"email\" is null)"
    assert compile_filter("not " * depth + "email is null", COLUMNS).count("not") == depth


def test_a_filter_longer_than_the_bound_is_refused_before_it_is_read(tmp_path):
    limit = segments.MAX_FILTER_LENGTH
    fits = "email is not null and value_tier in (" + ", ".join(["'top'"] * 600) + ")"
    fits = fits[:limit - 1].rsplit(",", 1)[0] + ")"
    assert len(fits) <= limit and compile_filter(fits, COLUMNS)
    path = tmp_path / "segments.yml"
    path.write_text("segments:\n  - name: huge\n    description: d\n    filter: \"value_tier in ("
                    + ", ".join(["'top'"] * 15_000) + ")\"\n")
    with pytest.raises(SegmentError) as exc:
        segments.load(path)
    assert str(exc.value).startswith(f"{path}: segment 'huge': filter: longer than {limit:,} characters "
                                     f"at position {limit + 1:,}")


def test_cli_validate_reports_deep_nesting_in_one_line(tmp_path, capsys):
    path = tmp_path / "segments.yml"
    path.write_text("segments:\n  - name: deep\n    description: d\n    filter: \""
                    + "(" * 300 + "email is null" + ")" * 300 + "\"\n")
    assert main(["segments", "validate", "--file", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "RecursionError" not in err
    assert f"{path}: segment 'deep': filter: nested more than 50 deep (parentheses and not) at position 51" in err


# what a filter is made of, right and wrong: hypothesis strings them together at random
FILTER_TOKENS = st.sampled_from([
    "(", ")", ",", "and", "or", "not", "in", "is", "null", "true", "false", "between", "like", "ilike",
    "=", "<>", "!=", "<", "<=", ">", ">=", "value_tier", "REVENUE_EUR", "has_marketing_consent", "emails",
    "last_order_at", "complaints", "ssn", "pg_sleep", "'top'", "''", "'o''x'", "'a\\b'", "'%@x'", "'", "1",
    "2.5", "-1", ";", "--", "::", '"value_tier"', "*", ".", "select", "\x00", "\n", "é",
])
FILTERS = st.one_of(
    st.lists(FILTER_TOKENS, max_size=40).map(" ".join),
    st.lists(FILTER_TOKENS, max_size=40).map("".join),
    st.text(max_size=80),
    st.tuples(st.integers(0, 400), st.sampled_from(["(", "not ", "not (", "(not "]), FILTER_TOKENS).map(
        lambda t: t[1] * t[0] + "email is null" + ")" * (t[0] * t[1].count("("))),
)


@settings(max_examples=2000, deadline=None, derandomize=True, database=None)
@given(FILTERS)
def test_the_parser_returns_a_filter_or_a_clear_error(text):
    """Whatever the text, a parse or a SegmentError naming the position; never another exception."""
    try:
        out = compile_filter(text, COLUMNS)
    except SegmentError as exc:
        assert re.search(r"at position [0-9,]+", str(exc)), str(exc)
        return
    # a parse is re-written SQL: balanced parentheses outside its string literals, no statement end
    outside = re.sub(r"'(?:[^']|'')*'", "''", out)
    assert outside.count("(") == outside.count(")") and ";" not in outside and "--" not in outside


def test_segments_reach_dbt_in_a_file_not_on_its_command_line(tmp_path, monkeypatch):
    """dbt's command line stays short however large the segments are (the kernel refuses an
    argument over 128 KiB: 'Argument list too long'); the vars go in a file."""
    from crm360.core.warehouse import Warehouse
    from crm360.transform import dbt

    calls = []

    def fake_run(cmd, **kwargs):
        calls.append((cmd, kwargs))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(dbt.subprocess, "run", fake_run)
    home = make_settings(tmp_path / "home", tmp_path / "landing")
    big = {"segments": [{"name": f"s{i}", "filter_sql": "x" * 3000} for i in range(200)]}
    dbt.run_dbt(Warehouse(params={"host": "127.0.0.1", "dbname": "none"}), ["build"], big, settings=home)
    (cmd, kwargs), = calls
    assert sum(len(a) for a in cmd) < 8 * 1024 and "--vars" not in cmd
    assert not any("x" * 3000 in a for a in [*cmd, *kwargs["env"].values()])
    vars_file = Path(cmd[cmd.index("--vars-file") + 1])
    assert vars_file.is_relative_to(home.home / "dbt") and json.loads(vars_file.read_text()) == big


def test_a_money_column_by_its_old_euro_name_still_works_with_a_deprecation_warning(tmp_path, caplog):
    """0.2 renamed revenue_eur to revenue (amounts are in the reporting currency): a segments.yml
    written before keeps working, and says what to rename; a name that never existed is still refused."""
    renamed = []
    assert compile_filter("revenue_eur >= 100 and REVENUE > 1", COLUMNS, renamed) == \
        "((\"revenue\" >= 100) and (\"revenue\" > 1))"
    assert renamed == [("revenue_eur", "revenue")]
    with pytest.raises(SegmentError, match="unknown column 'spend_eur'"):
        compile_filter("spend_eur > 0", COLUMNS)
    path = tmp_path / "segments.yml"
    path.write_text("segments:\n  - {name: a, description: d, filter: \"revenue_eur > 1 and revenue_eur < 9\"}\n")
    with caplog.at_level("WARNING", logger="crm360.serve.segments"):
        [found] = segments.load(path)
    assert found.filter_sql == "((\"revenue\" > 1) and (\"revenue\" < 9))"
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: segment 'a': filter: column revenue_eur is deprecated, renamed revenue in crm360 0.2 (amounts "
        "are in the reporting currency, marts.reporting_currency); rename it in the file: the old name will stop "
        "working"]
