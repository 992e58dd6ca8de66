"""Sources declared in configuration: column mapping, delimiters, fsspec locations, clear errors."""

import json
import textwrap

import fsspec
import pytest
from conftest import REPO

from crm360 import ingest
from crm360.ingest.sources import FileSource, SourceConfigError, SqlSourceBinding, load_config


def _config(tmp_path, text):
    path = tmp_path / "sources.yml"
    path.write_text(textwrap.dedent(text))
    return path


DEFAULT_SALES = """sources:
  sales:
    tables: {products: {pattern: a}, customers: {pattern: b}, orders: {pattern: c}, order_lines: {pattern: d}}
"""

DEFAULT_SERVICE_AND_WEB = """
  service:
    location: service
    tables: {tickets: {pattern: "tickets_*.json", format: json, list_key: tickets}}
  web:
    location: web
    tables: {events: {pattern: "events_*.jsonl"}}
"""


def test_the_shipped_configuration_binds_every_source():
    config = load_config(REPO / "sources.yml")
    assert set(config) == {"sales", "service", "web"}
    assert all(isinstance(b, FileSource) for b in config.values())


def test_a_company_binds_only_the_systems_it_has(tmp_path, monkeypatch):
    """Sales alone, or sales and service: the others are absent, not errors, and the DAGs follow."""
    from crm360.core.systems import deployed
    from crm360.pipeline import run

    sales_only = _config(tmp_path, DEFAULT_SALES)
    assert list(load_config(sales_only)) == ["sales"] and deployed(sales_only) == ("sales",)
    both = tmp_path / "both.yml"
    both.write_text(DEFAULT_SALES + "  service:\n    tables: {tickets: {pattern: 't*.json', format: json, "
                    "list_key: tickets}}\n")
    assert list(load_config(both)) == ["sales", "service"] and deployed(both) == ("sales", "service")
    assert deployed(REPO / "sources.yml") == ("sales", "service", "web")
    # the load step of an absent system loads nothing and says why; the run walks the bound ones
    monkeypatch.setenv("CRM360_SOURCES", str(sales_only))
    assert run.deployed_systems() == ("sales",)
    skipped = run.ingest_source(None, "web", "run_1", landing=tmp_path)
    assert skipped == {"source": "web", "batch_ids": [], "skipped": "not configured in sources.yml"}


def test_the_dags_follow_the_deployments_systems(tmp_path, monkeypatch):
    import importlib

    import crm360_airflow

    monkeypatch.setenv("CRM360_SOURCES", str(_config(tmp_path, DEFAULT_SALES)))
    try:
        assert importlib.reload(crm360_airflow).SOURCES == ("sales",)
    finally:
        monkeypatch.delenv("CRM360_SOURCES")
        assert importlib.reload(crm360_airflow).SOURCES == ("sales", "service", "web")


def test_the_mariadb_example_reads_its_url_from_the_environment(monkeypatch):
    monkeypatch.delenv("CRM360_SALES_DB_URL", raising=False)
    with pytest.raises(SourceConfigError, match=r"sources.sales.url: environment variable CRM360_SALES_DB_URL"):
        load_config(REPO / "examples" / "sources.mariadb.yml")
    monkeypatch.setenv("CRM360_SALES_DB_URL", "mysql://reader@db:3306/shop")
    sales = load_config(REPO / "examples" / "sources.mariadb.yml")["sales"]
    assert isinstance(sales, SqlSourceBinding) and sales.url == "mysql://reader@db:3306/shop"
    assert {t.contract.name: t.cursor for t in sales.tables} == {
        "products": "updated_at", "customers": "updated_at", "orders": "updated_at", "order_lines": "updated_at"}


def test_another_companys_export_loads_through_a_column_mapping(db, tmp_path):
    """Semicolon-separated CSVs with their own column names and JSON with renamed fields."""
    config = load_config(REPO / "examples" / "sources.renamed-columns.yml")
    day = tmp_path / "erp_exports" / "2026-03-01"
    day.mkdir(parents=True)
    (day / "debtors.csv").write_text(
        "DebtorNo;EMail;first_name;CreatedOn;Segment\nD-1;Ann@Example.com ;Ann;2026-03-01T09:00:00+01:00;B2C\n")
    helpdesk = tmp_path / "helpdesk"
    helpdesk.mkdir()
    (helpdesk / "export_2026-03-01.jsonl").write_text(json.dumps(
        {"ticket_number": "H-9", "opened": "2026-03-01T10:00:00Z", "type": "question"}) + "\n")
    sales = ingest.load_source(db, tmp_path, "sales", "b1", config=config)
    service = ingest.load_source(db, tmp_path, "service", "b1s", config=config)
    assert sales.rows == {"customers": 1} and service.rows == {"tickets": 1}
    assert sales.drift == ["sales/2026-03-01/debtors.csv: Segment"]
    with db.connect() as conn:
        assert conn.execute("select customer_id, email, first_name, created_at, _extra ->> 'Segment' "
                            "from raw.sales_customers").fetchone() == (
            "D-1", "Ann@Example.com ", "Ann", "2026-03-01T09:00:00+01:00", "B2C")
        record = conn.execute("select record from raw.service_tickets").fetchone()[0]
    assert record == {"id": "H-9", "created_at": "2026-03-01T10:00:00Z", "type": "question"}


def test_a_missing_mapped_column_names_both_names(db, tmp_path):
    config = load_config(REPO / "examples" / "sources.renamed-columns.yml")
    day = tmp_path / "erp_exports" / "2026-03-01"
    day.mkdir(parents=True)
    (day / "debtors.csv").write_text("CustomerNo;EMail;CreatedOn\nD-1;a@example.com;2026-03-01T09:00:00Z\n")
    with pytest.raises(ingest.IngestError, match=r"debtors.csv: line 1: required column\(s\) missing: customer_id "
                                                 r"\(customer_id is read from column 'DebtorNo'\)"):
        ingest.load_source(db, tmp_path, "sales", "b1", config=config)


def test_drops_are_read_from_any_fsspec_url(db, tmp_path, monkeypatch):
    fs = fsspec.filesystem("memory")
    event = {"event_id": "e1", "visitor_id": "v1", "occurred_at": "2026-03-01T10:00:00Z"}
    with fs.open("/crm360-test-bucket/web/2026-03-01/events_2026-03-01.jsonl", "w") as fh:
        fh.write(json.dumps(event) + "\n")
    monkeypatch.setenv("CRM360_WEB_EVENTS_URL", "memory://crm360-test-bucket/web")
    config = load_config(REPO / "examples" / "sources.renamed-columns.yml")
    try:
        result = ingest.load_source(db, tmp_path, "web", "b1", config=config)
        again = ingest.load_source(db, tmp_path, "web", "b2", config=config)
    finally:
        fs.rm("/crm360-test-bucket", recursive=True)
    assert result.files_loaded == ["web/2026-03-01/events_2026-03-01.jsonl"] and result.rows == {"events": 1}
    assert again.files_loaded == [] and again.files_skipped == result.files_loaded


@pytest.mark.parametrize(("text", "message"), [
    ("sources: {}\n", r"sources: bind at least one system \(sales, service, web\)"),
    ("sources:\n  crm: {tables: {}}\n", r"unknown source\(s\) crm"),
    ("sources:\n  sales:\n    tables: {orders: {pattern: x}}\n" + DEFAULT_SERVICE_AND_WEB,
     r"sources.sales.tables: table\(s\) not configured: customers, order_lines, products"),
    ("sources:\n  sales:\n    tables:\n      products: {pattern: a}\n      customers: {pattern: b}\n"
     "      order_lines: {pattern: c}\n      orders: {pattern: d, columns: {order_no: OrderNo}}\n"
     + DEFAULT_SERVICE_AND_WEB, r"sources.sales.tables.orders.columns: order_no not a crm360 column of orders"),
    ("sources:\n  sales: {kind: ftp, tables: {products: {}, customers: {}, orders: {}, order_lines: {}}}\n"
     + DEFAULT_SERVICE_AND_WEB, r"sources.sales.kind: expected 'files' or 'sql', got 'ftp'"),
    (DEFAULT_SALES + "  service: {kind: sql, url: 'mysql://x/y', tables: {tickets: {}}}\n"
     "  web: {tables: {events: {pattern: x}}}\n", r"sources.service: only tabular sources"),
    ("sources: [", r"not valid YAML"),
])
def test_configuration_mistakes_are_named(tmp_path, text, message):
    with pytest.raises(SourceConfigError, match=message):
        load_config(_config(tmp_path, text))
