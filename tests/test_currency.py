"""The reporting currency and the rates file (sources.yml ``currency:``): read from one place by the
loads and by dbt, checked with errors naming file, line and reason."""

import textwrap
from datetime import date
from decimal import Decimal

import pytest

from crm360.core.settings import Settings
from crm360.ingest import currency
from crm360.ingest.currency import CurrencyConfigError
from crm360.transform import dbt


def _sources(tmp_path, section: str):
    path = tmp_path / "sources.yml"
    path.write_text("sources:\n  sales: {}\n" + textwrap.dedent(section), encoding="utf-8")
    return path


def _rates(tmp_path, text: str, reporting: str = "EUR"):
    (tmp_path / "rates.csv").write_text(text, encoding="utf-8")
    return currency.read_rates(currency.CurrencyConfig(reporting, tmp_path / "rates.csv"))


def test_without_a_currency_section_the_marts_are_in_euros_and_need_no_rates(tmp_path):
    assert currency.load(_sources(tmp_path, "")) == currency.CurrencyConfig("EUR", None)
    assert currency.read_rates(currency.load(tmp_path / "sources.yml")) == []


def test_the_rates_file_is_found_beside_sources_yml_or_where_a_variable_says(tmp_path, monkeypatch):
    path = _sources(tmp_path, "currency: {reporting: USD, rates: fx/rates.csv}\n")
    assert currency.load(path) == currency.CurrencyConfig("USD", tmp_path / "fx" / "rates.csv")
    monkeypatch.setenv("FX_FILE", str(tmp_path / "elsewhere" / "fx.csv"))
    path = _sources(tmp_path, "currency: {rates: \"${FX_FILE}\"}\n")
    assert currency.load(path) == currency.CurrencyConfig("EUR", tmp_path / "elsewhere" / "fx.csv")


@pytest.mark.parametrize("section, reason", [
    ("currency: USD\n", "currency: expected a mapping with reporting and rates"),
    ("currency: {reporting: usd}\n", "currency.reporting: 'usd' is not a currency code (three capital letters, "
                                     "ISO 4217: EUR, USD, ...)"),
    ("currency: {reporting: EURO}\n", "currency.reporting: 'EURO' is not a currency code (three capital letters, "
                                      "ISO 4217: EUR, USD, ...)"),
    ("currency: {reporting: EUR, rate: x.csv}\n", "currency: unknown setting(s) rate; known: reporting, rates"),
    ("currency: {rates: 3}\n", "currency.rates: expected the path of a CSV file"),
])
def test_a_bad_currency_section_is_named(tmp_path, section, reason):
    path = _sources(tmp_path, section)
    with pytest.raises(CurrencyConfigError) as exc:
        currency.load(path)
    assert str(exc.value) == f"{path}: {reason}"


def test_a_rate_holds_to_its_end_or_until_the_next_one(tmp_path):
    rates = _rates(tmp_path, "Currency,Valid_From,Rate,Valid_To\nusd,2025-03-01,0.92,2025-03-31\n"
                             "GBP,2025-01-01,1.17,\n\nUSD,2025-04-02,0.9,\nGBP,2025-06-01,1.2,\n")
    assert [(r.currency, r.valid_from, r.valid_to, r.valid_until, r.rate, r.line) for r in rates] == [
        ("USD", date(2025, 3, 1), date(2025, 3, 31), date(2025, 3, 31), Decimal("0.92"), 2),
        ("GBP", date(2025, 1, 1), None, date(2025, 5, 31), Decimal("1.17"), 3),
        ("USD", date(2025, 4, 2), None, date.max, Decimal("0.9"), 5),  # 2025-04-01: no rate
        ("GBP", date(2025, 6, 1), None, date.max, Decimal("1.2"), 6)]


@pytest.mark.parametrize("text, reason", [
    ("", "line 1: empty file; expected the header currency,valid_from,rate[,valid_to]"),
    ("currency,from,rate\n", "line 1: the header must name currency, valid_from, rate and may name valid_to; "
                             "missing valid_from; unknown from"),
    ("currency,valid_from,rate\nUSD,2025-03-01\n", "line 2: 2 fields, the header has 3"),
    ("currency,valid_from,rate\nUS$,2025-03-01,0.9\n", "line 2: currency 'US$' is not a currency code (three letters)"),
    ("currency,valid_from,rate\nUSD,2025-03-01,0.9\nEUR,2025-03-01,1\n", "line 3: EUR is the reporting currency; "
                                                                          "it needs no rate"),
    ("currency,valid_from,rate\nUSD,1.3.2025,0.9\n", "line 2: valid_from '1.3.2025' is not a date (YYYY-MM-DD)"),
    ("currency,valid_from,valid_to,rate\nUSD,2025-03-01,2025-02-28,0.9\n",
     "line 2: valid_to 2025-02-28 is before valid_from 2025-03-01"),
    ("currency,valid_from,rate\nUSD,2025-03-01,0\n", "line 2: rate '0' is not a positive number"),
    ("currency,valid_from,rate\nUSD,2025-03-01,0,9\n", "line 2: 4 fields, the header has 3"),
    ("currency,valid_from,rate\nUSD,2025-03-01,NaN\n", "line 2: rate 'NaN' is not a positive number"),
    ("currency,valid_from,rate\nUSD,2025-03-01,-1\n", "line 2: rate '-1' is not a positive number"),
    ("currency,valid_from,rate\nUSD,2025-03-01,abc\n", "line 2: rate 'abc' is not a positive number"),
    ("currency,valid_from,valid_to,rate\nUSD,2025-03-01,2025-03-31,0.9\nGBP,2025-03-01,,1.1\n"
     "USD,2025-03-15,,0.91\n", "line 4: USD from 2025-03-15 overlaps line 2 (2025-03-01 to 2025-03-31): one rate "
                               "per currency and day"),
    ("currency,valid_from,rate\nUSD,2025-03-01,0.9\nUSD,2025-03-01,0.91\n",
     "line 3: USD from 2025-03-01 overlaps line 2 (2025-03-01 to 2025-03-01): one rate per currency and day"),
])
def test_a_bad_rates_file_is_named_with_line_and_reason(tmp_path, text, reason):
    with pytest.raises(CurrencyConfigError) as exc:
        _rates(tmp_path, text)
    assert str(exc.value) == f"{tmp_path / 'rates.csv'}: {reason}"


def test_a_missing_rates_file_is_named(tmp_path):
    with pytest.raises(CurrencyConfigError, match=r"rates\.csv: no such rates file \(sources.yml currency.rates\)"):
        currency.read_rates(currency.CurrencyConfig("EUR", tmp_path / "rates.csv"))


def test_dbt_and_python_get_the_reporting_currency_from_sources_yml(tmp_path):
    """One place: the loads (currency.reporting_currency) and every dbt run (its vars) read sources.yml;
    CRM360_DBT_VARS may not set it (tests/test_dbt_vars.py)."""
    path = _sources(tmp_path, "currency: {reporting: USD}\n")
    settings = Settings(sources=path, dbt_vars=None)
    assert currency.reporting_currency(settings) == "USD"
    assert dbt.deployment_vars(settings)["reporting_currency"] == "USD"
    assert dbt.project_vars(settings)["reporting_currency"] == "USD"
    assert dbt.declared_vars(settings)["reporting_currency"] == "EUR"  # a bare `dbt build`
