"""crm360 sources check: a dry run on a sample of each bound table, before a run loads them."""

import json
import shutil
from datetime import date

import pytest
import sales_db
import yaml
from conftest import REPO

from crm360 import cli
from crm360.core.settings import Settings
from crm360.ingest import IngestError, load_source
from crm360.ingest.mysql import mysql_connection
from crm360.quality import preview

TILL = REPO / "examples" / "till"
AS_OF = date(2026, 11, 1)


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


def _settings(tmp_path, config, landing, monkeypatch) -> Settings:
    monkeypatch.setenv("CRM360_SOURCES", str(config))
    return Settings(project_dir=REPO, home=tmp_path / "home", landing_dir=landing)


def _warehouse_state(wh) -> dict:
    """Every table of raw, audit and scratch with its row count."""
    with wh.connect() as conn:
        tables = conn.execute("select table_schema, table_name from information_schema.tables "
                              "where table_schema in ('raw', 'audit', 'scratch') order by 1, 2").fetchall()
        return {f"{s}.{t}": conn.execute(f'select count(*) from "{s}"."{t}"').fetchone()[0]  # noqa: S608
                for s, t in tables}


def test_the_till_example_passes_and_shows_rows_as_crm360_sees_them(tmp_path, monkeypatch, capsys):
    config, landing = _till(tmp_path)
    monkeypatch.setenv("CRM360_SOURCES", str(config))
    assert cli.main(["sources", "check", "--no-warehouse", "--landing", str(landing)]) == 0
    out = capsys.readouterr().out
    assert "sales.orders: 1 file(s); sampled sales/2026-10-31/purchases.csv#orders" in out
    assert "order_id='sales/2026-10-31/purchases.csv:1', status='completed'" in out
    assert "ordered_at='2026-08-01T00:00:00-04:00'" in out
    assert "loaded and checked in the warehouse" not in out
    assert out.rstrip().endswith("no table would fail a run on this sample")


def test_without_a_warehouse_a_bad_date_is_still_named(tmp_path, monkeypatch, capsys):
    config, landing = _till(tmp_path, bad_day="01.08.2026")
    monkeypatch.setenv("CRM360_SOURCES", str(config))
    assert cli.main(["sources", "check", "--no-warehouse", "--landing", str(landing)]) == 0  # 1 in 10: below no limit
    out = capsys.readouterr().out
    assert "quarantined: line 3: ordered_at: '01.08.2026' does not match the date format %Y%m%d" in out


def test_the_raw_gate_fails_in_the_dry_run_and_the_warehouse_is_left_as_it_was(db, tmp_path, monkeypatch):
    config, landing = _till(tmp_path, quality=False, bad_day="01.08.2026")
    settings = _settings(tmp_path, config, landing, monkeypatch)
    before = _warehouse_state(db)
    results = {r.table: r for r in preview.check(settings, landing, wh=db, as_of=AS_OF)}
    assert _warehouse_state(db) == before
    customers, orders = results["customers"], results["orders"]
    assert customers.loaded and orders.loaded
    # the shipped suite expects e-mails; the till has none: the real GX check says so
    assert any(g.startswith("raw_sales_customers.email: expect_column_values_to_not_be_null")
               for g in customers.gates), preview.render(list(results.values()))
    assert ("line 3", "ordered_at: '01.08.2026' does not match the date format %Y%m%d") in orders.bad
    assert not orders.gates
    text = preview.render(list(results.values()))
    assert "GATE FAILS: raw_sales_customers.email" in text
    assert text.rstrip().endswith("table(s) would fail a run")


def test_the_till_example_passes_through_the_warehouse(db, tmp_path, monkeypatch):
    config, landing = _till(tmp_path)
    settings = _settings(tmp_path, config, landing, monkeypatch)
    results = preview.check(settings, landing, sample=100, wh=db, as_of=AS_OF)
    assert all(r.loaded and not r.fails for r in results), preview.render(results)
    assert {r.sampled for r in results} == {100}  # of the file's 420


SALES = {
    "products.csv": ["product_id,product_name,category,list_price", "P1,Lamp,home,19.90"],
    "customers.csv": ["customer_id,first_name,email,created_at", "C1,Anna,anna@example.com,2026-10-01T09:00:00+00:00",
                      "C2,Ben,ben@example.com,2026-02-30T09:00:00+00:00"],  # no 30 February
    "orders.csv": ["order_id,customer_id,ordered_at,status",
                   *[f"O{i},C1,2026-10-01T10:00:00+00:00,placed" for i in range(1, 40)],
                   "O40,C1,0001-10-01T10:00:00+00:00,placed"],  # a year no record has
    "order_lines.csv": ["order_id,line_number,product_id,quantity,unit_price",
                        *[f"O{i},1,P1,1,19.90" for i in range(1, 40)], "O40,1,P1,-2,19.90"],
}


def _sales_files(tmp_path):
    landing = tmp_path / "landing"
    day = landing / "sales" / "2026-10-01"
    day.mkdir(parents=True)
    for name, lines in SALES.items():
        (day / name).write_text("\n".join(lines) + "\n")
    document = yaml.safe_load((REPO / "sources.yml").read_text())
    document["sources"] = {"sales": document["sources"]["sales"]}
    config = tmp_path / "sources.yml"
    config.write_text(yaml.safe_dump(document))
    return config, landing


def test_the_value_checks_quarantine_in_the_dry_run_what_the_load_quarantines(db, fresh_db, embedded_server,
                                                                               tmp_path, monkeypatch):
    config, landing = _sales_files(tmp_path)
    settings = _settings(tmp_path, config, landing, monkeypatch)
    results = {r.table: r for r in preview.check(settings, landing, wh=db, as_of=AS_OF)}
    dry = {(t, reason) for t, r in results.items() for _, reason in r.bad}
    assert ("order_lines", "quantity: quantity must be a positive whole number: -2") in dry
    assert ("customers", "created_at: not a valid timestamptz: 2026-02-30T09:00:00+00:00") in dry
    assert ("orders", "ordered_at: a year outside the plausible 1900 to 2099: 0001-10-01T10:00:00+00:00") in dry
    assert results["customers"].fails  # 1 of 2: more than a batch may have
    # the load of the same files, into another database, quarantines the same records for the same reasons
    target = fresh_db(embedded_server)
    with pytest.raises(IngestError, match="malformed"):  # too many of them: the attempt is taken back out
        load_source(target, landing, "sales", batch_id="b1:sales")
    monkeypatch.setenv("CRM360_MAX_BAD_ROW_FRACTION", "0.6")
    load_source(target, landing, "sales", batch_id="b2:sales")
    with target.connect() as conn:
        loaded = set(conn.execute("select table_name, reason from raw._quarantine").fetchall())
    names = {"sales_customers": "customers", "sales_orders": "orders", "sales_order_lines": "order_lines"}
    assert {(names[t], reason) for t, reason in loaded} == dry


def _json_files(tmp_path, events=60):
    landing = tmp_path / "landing"
    (landing / "web").mkdir(parents=True)
    (landing / "service").mkdir(parents=True)
    lines = [json.dumps({"event_id": f"e{i}", "visitor_id": "v1", "event_type": "page_view",
                         "occurred_at": "2026-10-01T10:00:00+00:00"}) for i in range(1, events + 1)]
    lines[1] = '{"event_id": "e2", "visitor_id": "v1"'  # broken JSON
    lines[2] = json.dumps({"event_id": "e3", "visitor_id": "v1", "occurred_at": "2026-13-01T00:00:00+00:00"})
    (landing / "web" / "events_2026-10-01.jsonl").write_text("\n".join(lines) + "\n")
    tickets = [{"id": "T1", "type": "complaint", "created_at": "2026-10-01T08:00:00+00:00", "satisfaction": 4},
               {"id": "T2", "type": "question", "created_at": "2026-10-01T09:00:00+00:00", "satisfaction": 9},
               {"id": "T3", "type": "complaint", "created_at": "2026-10-01T09:30:00+00:00"}]
    (landing / "service" / "tickets_2026-10-01.json").write_text(json.dumps({"tickets": tickets}))
    document = yaml.safe_load((REPO / "sources.yml").read_text())
    document["sources"] = {k: document["sources"][k] for k in ("service", "web")}
    config = tmp_path / "sources.yml"
    config.write_text(yaml.safe_dump(document))
    return config, landing


def test_json_sources_are_sampled_mapped_and_checked(db, tmp_path, monkeypatch):
    config, landing = _json_files(tmp_path)
    settings = _settings(tmp_path, config, landing, monkeypatch)
    before = _warehouse_state(db)
    results = {r.table: r for r in preview.check(settings, landing, sample=20, wh=db, as_of=AS_OF)}
    assert _warehouse_state(db) == before
    events, tickets = results["events"], results["tickets"]
    assert events.loaded and events.sampled == 20  # of 60 lines: the sample, not the file
    assert events.rows[0]["event_id"] == "e1"
    assert [w for w, _ in events.bad] == ["line 2", "line 3"]
    assert events.bad[1][1] == "occurred_at: not a valid timestamptz: 2026-13-01T00:00:00+00:00"
    assert ("record 2", "satisfaction: satisfaction must be 1 to 5: 9") in tickets.bad
    assert tickets.sampled == 3 and tickets.fails and events.fails
    text = preview.render(list(results.values()))
    assert "quarantined: line 2: invalid JSON" in text


def test_a_json_gate_fails_in_the_dry_run(db, tmp_path, monkeypatch):
    config, landing = _json_files(tmp_path)
    path = landing / "service" / "tickets_2026-10-01.json"
    path.write_text(json.dumps({"tickets": [{"id": "T1", "type": "feedback", "created_at": "2026-10-01T08:00:00Z"}]}))
    settings = _settings(tmp_path, config, landing, monkeypatch)
    tickets = next(r for r in preview.check(settings, landing, wh=db, as_of=AS_OF) if r.table == "tickets")
    assert not tickets.bad
    assert any(g.startswith("raw_service_tickets.ticket_type: expect_column_values_to_be_in_set")
               for g in tickets.gates)


def test_the_cli_checks_in_the_configured_warehouse(db, tmp_path, monkeypatch, capsys):
    config, landing = _till(tmp_path, quality=False)
    monkeypatch.setenv("CRM360_SOURCES", str(config))
    monkeypatch.setenv("CRM360_WAREHOUSE_URL", db.conninfo)
    assert cli.main(["sources", "check", "--landing", str(landing), "--as-of", "2026-11-01"]) == 1
    out = capsys.readouterr().out
    assert "420 record(s) read, 0 would be quarantined; loaded and checked in the warehouse" in out
    assert "GATE FAILS: raw_sales_customers.email" in out


def test_a_sql_source_is_sampled_by_its_newest_rows_and_gated(db, shop_url, tmp_path, monkeypatch):
    _, files = _sales_files(tmp_path / "drops")
    sales_db.publish_drops(files, shop_url)  # the typed columns refuse 30 February, year 1 and -2 stay
    with mysql_connection(shop_url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE customers SET email = ''")
        conn.commit()
    document = yaml.safe_load((REPO / "examples" / "sources.mariadb.yml").read_text())
    document["sources"] = {"sales": document["sources"]["sales"]}
    config = tmp_path / "sources.yml"
    config.write_text(yaml.safe_dump(document))
    monkeypatch.setenv("CRM360_SALES_DB_URL", shop_url)
    settings = _settings(tmp_path, config, tmp_path / "empty", monkeypatch)
    before = _warehouse_state(db)
    results = {r.table: r for r in preview.check(settings, sample=5, wh=db, as_of=AS_OF)}
    assert _warehouse_state(db) == before
    orders, lines, customers = results["orders"], results["order_lines"], results["customers"]
    assert orders.loaded and orders.sampled == 5 and lines.sampled == 5  # of 40: the newest by updated_at
    assert orders.file == "orders (the newest 5 row(s) by updated_at)"
    assert orders.rows[0]["order_id"] == "O9" and orders.rows[0]["status"] == "placed"
    assert set(orders.rows[0]) >= {"order_id", "customer_id", "ordered_at", "status"}
    assert not orders.bad  # a SQL load checks no values; its gate does
    assert any(g.startswith("raw_sales_orders.status: expect_column_values_to_be_in_set") for g in orders.gates)
    assert any(g.startswith("raw_sales_customers.email: expect_column_values_to_not_be_null")
               for g in customers.gates), preview.render(list(results.values()))


def test_a_sample_is_bounded_whatever_the_file_holds(tmp_path):
    """The sample of a CSV, a JSON-lines file and a workbook is read from the file's start only."""
    from crm360.ingest import sample
    from crm360.ingest.drops import Drop
    from crm360.ingest.sources import FileTable, contract_table

    class Endless:
        """A file that never ends: reading all of it would never return."""

        def __init__(self, head: bytes, line: bytes):
            self.head, self.line, self.read_bytes = head, line, 0

        def read(self, size=-1):
            assert size > 0, "the sample asked for the whole file"
            self.read_bytes += size
            assert self.read_bytes < 50 << 20, "read far more than a sample"
            out, self.head = self.head, b""
            return out + self.line * (size // len(self.line))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    class EndlessDrop(Drop):
        def open(self):
            if self.table.format == "csv":
                return Endless(b"order_id,customer_id,ordered_at,status\n", b'O1,C1,"2026-10-01\nT10:00",placed\n')
            return Endless(b"", b'{"event_id": "e1", "visitor_id": "v", "occurred_at": "2026-10-01"}\n')

    orders = FileTable(contract_table("sales", "orders"), "*.csv", "csv")
    events = FileTable(contract_table("web", "events"), "*.jsonl", "jsonl")
    csv_sample = sample.sample_drop(EndlessDrop(orders, None, "x.csv", "sales/x.csv"), 3)
    assert csv_sample.data.count(b"\n") == 1 + 3 * 2  # the header, three records of two lines each
    jsonl_sample = sample.sample_drop(EndlessDrop(events, None, "x.jsonl", "web/x.jsonl"), 4)
    assert jsonl_sample.data.count(b"\n") == 4


def test_a_workbook_is_sampled_by_its_first_rows(tmp_path, monkeypatch):
    from openpyxl import Workbook

    config, landing = _till(tmp_path)
    path = landing / "2026-10-31" / "purchases.csv"
    book = Workbook(write_only=True)
    sheet = book.create_sheet("purchases")
    for line in path.read_text().splitlines():
        sheet.append(line.split(","))
    path.unlink()
    book.save(path.with_suffix(".xlsx"))
    document = yaml.safe_load(config.read_text())
    for table in document["sources"]["sales"]["tables"].values():
        table.update(pattern="*/purchases.xlsx", format="xlsx")
    document["sources"]["sales"]["tables"]["orders"]["dates"] = {"ordered_at": "%d.%m.%Y"}  # not how it is written
    config.write_text(yaml.safe_dump(document))
    settings = _settings(tmp_path, config, landing, monkeypatch)
    results = {r.table: r for r in preview.check(settings, landing, sample=10)}
    orders = results["orders"]
    assert orders.file == "sales/2026-10-31/purchases.xlsx#orders" and orders.sampled == 10
    assert orders.bad[0] == ("line 2", "ordered_at: '20260801' does not match the date format %d.%m.%Y")
    assert len(orders.bad) == 10 and orders.fails
    assert results["customers"].rows[0] == {"customer_id": "10006", "created_at": "2026-08-01T00:00:00-04:00"}


def test_a_check_reads_the_rates_file_as_a_load_would(tmp_path, monkeypatch, capsys):
    config, landing = _till(tmp_path)
    document = yaml.safe_load(config.read_text())
    document["currency"] = {"reporting": "EUR", "rates": "rates.csv"}
    config.write_text(yaml.safe_dump(document))
    rates = tmp_path / "rates.csv"
    rates.write_text("currency,valid_from,rate\nUSD,2026-01-01,0.9\nUSD,2026-09-01,0.85\n")
    monkeypatch.setenv("CRM360_SOURCES", str(config))
    assert cli.main(["sources", "check", "--no-warehouse", "--landing", str(landing)]) == 0
    assert f"currency.rates: 1 file(s); sampled {rates} (2 rate(s) to EUR)" in capsys.readouterr().out

    rates.write_text("currency,valid_from,rate\nUSD,2026-01-01,0.9\nUSD,2026-09-01,zero\n")
    assert cli.main(["sources", "check", "--no-warehouse", "--landing", str(landing)]) == 1
    out = capsys.readouterr().out
    assert f"  FAILS: {rates}: line 3: rate 'zero' is not a positive number" in out
    assert "1 table(s) would fail a run" in out
