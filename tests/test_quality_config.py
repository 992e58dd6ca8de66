"""What a deployment expects of its data is configuration (the quality: section of sources.yml): the
shipped suites read it, the defaults are the shipped values, and a wrong entry is named."""

import textwrap

import pytest

from crm360.quality import expect, gates
from crm360.quality.expect import QualityConfigError

SUITES = [s for stage in gates.STAGES for s in gates.load_suites(stage)]


def _suite(name):
    return next(s for s in SUITES if s.name == name)


def _check(suite, column, kind):
    found = [e for e in suite.expectations if e.get("kwargs", {}).get("column") == column and e["type"] == kind]
    return found[0] if found else None


def _load(tmp_path, text):
    path = tmp_path / "sources.yml"
    path.write_text("sources:\n  sales: {}\n" + textwrap.dedent(text))
    return expect.load(path, SUITES)


def test_without_a_quality_section_every_suite_runs_as_shipped(tmp_path):
    config = _load(tmp_path, "")
    for suite in SUITES:
        assert config.apply(suite).expectations == suite.expectations
    # the shipped defaults are today's strict ones
    email = _check(_suite("raw_sales_customers"), "email", "expect_column_values_to_not_be_null")
    assert email["kwargs"]["mostly"] == 0.9


def test_the_shipped_suites_let_a_deployment_set_fill_rates_bounds_and_row_counts():
    allowed = expect.configurable(SUITES)
    assert allowed["raw_sales_customers"] == {"filled": {"email"}}
    assert allowed["marts_customer_360"] == {"filled": {"contact_email"}, "bounds": {"revenue"},
                                             "row_count": {None}}
    assert allowed["raw_sales_order_lines"] == {"bounds": {"unit_price"}}
    assert allowed["marts_row_counts"] == {"bounds": {"ratio_to_published"}}


def test_a_company_without_e_mails_drops_the_e_mail_checks_and_sets_its_bounds(tmp_path):
    config = _load(tmp_path, """
        quality:
          raw_sales_customers:
            filled: {email: 0}
          marts_customer_360:
            filled: {contact_email: 0.5}
            bounds: {revenue: {max: 50000000}}
            row_count: {min: 10}
          raw_sales_order_lines:
            bounds: {unit_price: {min: 0.01, max: 250000}}
        """)
    raw = config.apply(_suite("raw_sales_customers"))
    assert _check(raw, "email", "expect_column_values_to_not_be_null") is None
    assert _check(raw, "customer_id", "expect_column_values_to_not_be_null") is not None  # the key stays
    marts = config.apply(_suite("marts_customer_360"))
    assert _check(marts, "contact_email", "expect_column_values_to_not_be_in_set")["kwargs"]["mostly"] == 0.5
    assert _check(marts, "revenue", "expect_column_values_to_be_between")["kwargs"] == {
        "column": "revenue", "min_value": 0, "max_value": 50000000}
    [rows] = [e for e in marts.expectations if e["type"] == "expect_table_row_count_to_be_between"]
    assert rows["kwargs"] == {"min_value": 10}
    lines = config.apply(_suite("raw_sales_order_lines"))
    assert _check(lines, "unit_price", "expect_column_values_to_be_between")["kwargs"] == {
        "column": "unit_price", "min_value": 0.01, "max_value": 250000}
    # the shipped suite itself is untouched
    assert _check(_suite("raw_sales_customers"), "email", "expect_column_values_to_not_be_null") is not None


@pytest.mark.parametrize(("text", "message"), [
    ("quality: [1]", "quality: expected a mapping of suite name"),
    ("quality:\n  raw_sales_custmers: {filled: {email: 0}}",
     "quality.raw_sales_custmers: no configurable suite of that name; configurable: .*raw_sales_customers"),
    ("quality:\n  raw_sales_customers: {bounds: {email: {min: 1}}}",
     "quality.raw_sales_customers.bounds: raw_sales_customers has no 'bounds' setting; it has filled"),
    ("quality:\n  raw_sales_customers: {filled: {customer_id: 0}}",
     "quality.raw_sales_customers.filled.customer_id: not a configurable column; configurable: email"),
    ("quality:\n  raw_sales_customers: {filled: {email: 90}}",
     "quality.raw_sales_customers.filled.email: the share of rows .* from 0 .* to 1 .*; got 90"),
    ("quality:\n  marts_customer_360: {bounds: {revenue: {min: 5, max: 1}}}",
     "quality.marts_customer_360.bounds.revenue: min 5 is above max 1"),
    ("quality:\n  marts_customer_360: {bounds: {revenue: {top: 5}}}",
     "quality.marts_customer_360.bounds.revenue: expected {min: ..., max: ...}"),
    ("quality:\n  marts_customer_360: {row_count: {min: 0.5}}",
     "quality.marts_customer_360.row_count.min: a whole number of rows; got 0.5"),
    ("quality:\n  raw_sales_order_lines: {bounds: {unit_price: {max: lots}}}",
     "quality.raw_sales_order_lines.bounds.unit_price.max: a number; got 'lots'"),
])
def test_a_wrong_entry_is_named(tmp_path, text, message):
    with pytest.raises(QualityConfigError, match=message):
        _load(tmp_path, text + "\n")


def test_a_gate_reads_the_deployments_file(tmp_path, monkeypatch):
    path = tmp_path / "company.yml"
    path.write_text("sources:\n  sales: {}\nquality:\n  raw_sales_customers: {filled: {emial: 0}}\n")
    monkeypatch.setenv("CRM360_SOURCES", str(path))
    with pytest.raises(QualityConfigError, match=r"company.yml: quality.raw_sales_customers.filled.emial"):
        gates.deployment_expectations()
