"""Money has a currency, end to end: the till's purchase log with purchases in dollars, euros and one
in pounds, reported in euros with a rates file, then in dollars. Every figure is computed here from
the files, with Python's decimals, not read back from the warehouse."""

import csv
import json
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import pytest
from conftest import REPO, make_settings
from fingerprint import incremental_equals_full_rebuild

from crm360 import pipeline
from crm360.serve import report

pytestmark = pytest.mark.e2e

TILL = REPO / "examples" / "till"
GBP_LINE = 8  # the one purchase in pounds, for which there is no rate: quarantined
CENT = Decimal("0.01")

# to euros: a dated rate with an end, an open one, then one that ends the open one
USD_TO_EUR = "currency,valid_from,valid_to,rate\nUSD,2026-08-01,2026-08-31,0.9\nUSD,2026-09-01,,0.85\n" \
             "USD,2026-10-15,,0.8\n"
EUR_TO_USD = "currency,valid_from,rate\nEUR,2026-01-01,1.1\nEUR,2026-09-15,1.2\n"


def _usd_rate(day: str) -> Decimal:
    if day < "20260901":
        return Decimal("0.9")
    return Decimal("0.85") if day < "20261015" else Decimal("0.8")


def _eur_rate(day: str) -> Decimal:
    return Decimal("1.1") if day < "20260915" else Decimal("1.2")


def _config(tmp_path, reporting: str, rates: str) -> None:
    text = (TILL / "sources.yml").read_text(encoding="utf-8")
    text = text.replace("currency:           # the till takes dollars only: report in them, no rates needed\n"
                        "  reporting: USD\n", f"currency:\n  reporting: {reporting}\n  rates: rates.csv\n")
    assert f"reporting: {reporting}" in text
    (tmp_path / "sources.yml").write_text(text, encoding="utf-8")
    (tmp_path / "rates.csv").write_text(rates, encoding="utf-8")


def _purchases(landing):
    """The till's purchases, every third in euros, one in pounds, the rest in dollars; (line, row)."""
    with (TILL / "landing" / "2026-10-31" / "purchases.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for line, row in enumerate(rows, start=2):
        row["Currency"] = "GBP" if line == GBP_LINE else "EUR" if line % 3 == 0 else "USD"
    day = landing / "2026-10-31"
    day.mkdir(parents=True)
    with (day / "purchases.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return list(enumerate(rows, start=2))


def _revenue(rows, to_reporting) -> Decimal:
    """Each purchase (one line of quantity 1 at its amount) converted and rounded to the cent."""
    return sum((Decimal(row["AmountUSD"]) * to_reporting(row)).quantize(CENT, ROUND_HALF_UP)
               for line, row in rows if line != GBP_LINE)


def test_orders_in_other_currencies_are_converted_and_one_without_a_rate_is_quarantined(
        external_server, fresh_db, tmp_path, monkeypatch):
    landing = tmp_path / "landing"
    rows = _purchases(landing)
    monkeypatch.setenv("CRM360_SOURCES", str(tmp_path / "sources.yml"))
    _config(tmp_path, "EUR", USD_TO_EUR)
    wh = fresh_db(external_server)
    settings = make_settings(tmp_path / "home", landing)

    summary = pipeline.run_all(date(2026, 11, 1), "eur", wh, landing=landing, settings=settings)

    gbp = dict(rows)[GBP_LINE]
    expected = _revenue(rows, lambda row: Decimal(1) if row["Currency"] == "EUR" else _usd_rate(row["Date"]))
    with wh.connect() as conn:
        quarantined = conn.execute("select table_name, source_file, line_number, reason from raw._quarantine "
                                   "order by table_name").fetchall()
        [(total, orders)] = conn.execute("select sum(revenue), sum(orders_completed) from marts.customer_360")
        currency = conn.execute("select currency_code, as_of_date from marts.reporting_currency").fetchall()
        loaded = conn.execute("select count(*), count(*) filter (where currency = 'USD') from raw.sales_orders"
                              ).fetchone()
        stored = conn.execute("select currency, valid_from, valid_to, valid_until, rate, line "
                              "from raw.currency_rates order by valid_from").fetchall()
    day = f"{gbp['Date'][:4]}-{gbp['Date'][4:6]}-{gbp['Date'][6:]}"
    assert quarantined == [("sales_orders", "sales/2026-10-31/purchases.csv#orders", GBP_LINE,
                            f"no rate for GBP on {day}")]
    # exactly that order is missing: every other purchase is loaded and counted
    assert loaded == (len(rows) - 1, sum(row["Currency"] == "USD" for _, row in rows))
    assert (total, orders) == (expected, len(rows) - 1)
    assert currency == [("EUR", date(2026, 11, 1))] and summary.currency == "EUR"
    assert [(c, str(f), t and str(t), str(u), r, line) for c, f, t, u, r, line in stored] == [
        ("USD", "2026-08-01", "2026-08-31", "2026-08-31", Decimal("0.9"), 2),
        ("USD", "2026-09-01", None, "2026-10-14", Decimal("0.85"), 3),
        ("USD", "2026-10-15", None, "9999-12-31", Decimal("0.8"), 4)]
    assert "Amounts (revenue, spend, values) in EUR, the reporting currency" in report.render(summary, wh)

    # the deployment reports in dollars from now on: the same orders, the other way round
    _config(tmp_path, "USD", EUR_TO_USD)
    summary = pipeline.run_all(date(2026, 11, 2), "usd", wh, landing=landing, settings=settings)

    expected = _revenue(rows, lambda row: Decimal(1) if row["Currency"] == "USD" else _eur_rate(row["Date"]))
    with wh.connect() as conn:
        [(total,)] = conn.execute("select sum(revenue) from marts.customer_360")
        currency = conn.execute("select currency_code from marts.reporting_currency").fetchall()
        [(pyramid,)] = conn.execute("select sum(revenue) from marts.customer_pyramid_summary "
                                    "where is_current and pyramid = 'revenue'")
    assert total == expected and pyramid == expected
    assert currency == [("USD",)] and summary.currency == "USD"
    assert json.loads((settings.reports_dir / "latest.json").read_text())["currency"] == "USD"
    # a day with new rates and another reporting currency, no new row: every customer's amounts
    # move, so what is built only for the customers a day touched is built for everyone
    with wh.connect() as conn:
        affected = conn.execute("select reason, customer_key from intermediate.int_customers_affected").fetchall()
    assert affected == [("sales", None)], "new rates recompute every customer"
    incremental_equals_full_rebuild(wh, settings, date(2026, 11, 2))


def test_a_bad_rates_file_fails_the_sales_load_naming_file_line_and_reason(db, tmp_path, monkeypatch):
    """Before any file: a load with a broken rates file would quarantine orders for a typo; nothing
    of the attempt stays, and the rates stored before are kept."""
    from crm360 import ingest
    from crm360.ingest.batch import IngestError

    landing = tmp_path / "landing"
    _purchases(landing)
    monkeypatch.setenv("CRM360_SOURCES", str(tmp_path / "sources.yml"))
    _config(tmp_path, "EUR", USD_TO_EUR + "GBP,2026-08-01,,1.17\n")
    first = ingest.load_source(db, landing, "sales", "first:sales")
    assert first.quarantined == {}  # pounds have a rate now
    (landing / "2026-10-31" / "purchases.csv").write_text(
        (landing / "2026-10-31" / "purchases.csv").read_text().replace(",USD\n", ",GBP\n", 1))  # a changed file
    (tmp_path / "rates.csv").write_text(USD_TO_EUR + "GBP,2026-08-01,,1,17\n")
    with pytest.raises(IngestError) as caught:
        ingest.load_source(db, landing, "sales", "second:sales")
    assert str(caught.value) == f"{tmp_path / 'rates.csv'}: line 5: 5 fields, the header has 4"
    with db.connect() as conn:
        batches = conn.execute("select distinct _batch_id from raw.sales_orders").fetchall()
        rates = conn.execute("select currency, rate from raw.currency_rates order by line").fetchall()
    assert batches == [("first:sales",)]
    assert rates == [("USD", Decimal("0.9")), ("USD", Decimal("0.85")), ("USD", Decimal("0.8")),
                     ("GBP", Decimal("1.17"))]
