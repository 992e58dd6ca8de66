"""crm360 sources check: a dry run on the files as they are, before a run loads them."""

import shutil

import yaml
from conftest import REPO

from crm360 import cli

TILL = REPO / "examples" / "till"


def _till(tmp_path, quality=True, bad_day=None):
    landing = tmp_path / "landing"
    shutil.copytree(TILL / "landing", landing)
    if bad_day:
        path = landing / "2026-10-31" / "purchases.csv"
        lines = path.read_text().splitlines()
        lines[2] = lines[2].replace(lines[2].split(",")[1], bad_day)
        path.write_text("\n".join(lines) + "\n")
    document = yaml.safe_load((TILL / "sources.yml").read_text())
    if not quality:
        del document["quality"]
    config = tmp_path / "sources.yml"
    config.write_text(yaml.safe_dump(document))
    return config, landing


def test_the_till_example_passes_and_shows_rows_as_crm360_sees_them(tmp_path, monkeypatch, capsys):
    config, landing = _till(tmp_path)
    monkeypatch.setenv("CRM360_SOURCES", str(config))
    assert cli.main(["sources", "check", "--landing", str(landing)]) == 0
    out = capsys.readouterr().out
    assert "sales.orders: 1 file(s); sampled sales/2026-10-31/purchases.csv#orders" in out
    assert "order_id='sales/2026-10-31/purchases.csv:1', status='completed'" in out
    assert "ordered_at='2026-08-01T00:00:00-04:00'" in out
    assert out.rstrip().endswith("no table would fail a run on this sample")


def test_a_check_names_the_failing_gate_and_the_record_it_would_quarantine(tmp_path, monkeypatch, capsys):
    config, landing = _till(tmp_path, quality=False, bad_day="01.08.2026")
    monkeypatch.setenv("CRM360_SOURCES", str(config))
    assert cli.main(["sources", "check", "--landing", str(landing)]) == 1
    out = capsys.readouterr().out
    assert ("GATE FAILS: raw_sales_customers.email: 0% of the sampled rows have a value, the raw gate expects 90%"
            in out)
    assert "quarantined: line 3: ordered_at: '01.08.2026' does not match the date format %Y%m%d" in out
    assert "1 table(s) would fail a run" in out


def test_a_check_reads_the_rates_file_as_a_load_would(tmp_path, monkeypatch, capsys):
    config, landing = _till(tmp_path)
    document = yaml.safe_load(config.read_text())
    document["currency"] = {"reporting": "EUR", "rates": "rates.csv"}
    config.write_text(yaml.safe_dump(document))
    rates = tmp_path / "rates.csv"
    rates.write_text("currency,valid_from,rate\nUSD,2026-01-01,0.9\nUSD,2026-09-01,0.85\n")
    monkeypatch.setenv("CRM360_SOURCES", str(config))
    assert cli.main(["sources", "check", "--landing", str(landing)]) == 0
    assert f"currency.rates: 1 file(s); sampled {rates} (2 rate(s) to EUR)" in capsys.readouterr().out

    rates.write_text("currency,valid_from,rate\nUSD,2026-01-01,0.9\nUSD,2026-09-01,zero\n")
    assert cli.main(["sources", "check", "--landing", str(landing)]) == 1
    out = capsys.readouterr().out
    assert f"  FAILS: {rates}: line 3: rate 'zero' is not a positive number" in out
    assert "1 table(s) would fail a run" in out
