import json

import pytest

from crm360 import ingest
from crm360.generate import GeneratorConfig, generate


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    root = tmp_path_factory.mktemp("landing")
    _, manifest = generate(root, GeneratorConfig.preset("tiny"))
    return root, manifest


def _counts(wh):
    with wh.connect() as conn:
        return {
            t: conn.execute(f"select count(*) from raw.{t}").fetchone()[0]  # noqa: S608
            for t in (
                "sales_customers",
                "sales_orders",
                "sales_order_lines",
                "sales_products",
                "service_tickets",
                "web_events",
            )
        }


def _load_all(wh, root, batch):
    return {s: ingest.load_source(wh, root, s, f"{batch}:{s}") for s in ingest.SOURCES}


def test_load_counts_match_the_source(db, landing):
    root, manifest = landing
    _load_all(db, root, "b1")
    counts = _counts(db)
    assert counts["sales_customers"] == manifest["shop_customers"]
    assert counts["sales_orders"] == manifest["orders"]
    assert counts["sales_order_lines"] == manifest["order_lines"]
    assert counts["sales_products"] == manifest["products"]
    assert counts["service_tickets"] == manifest["tickets"]
    assert counts["web_events"] == manifest["web_events"]
    with db.connect() as conn:
        row = conn.execute(
            "select _batch_id, _source_file, _loaded_at from raw.web_events limit 1"
        ).fetchone()
    assert row[0] == "b1:web" and row[1].startswith("web/events_") and row[2] is not None


def test_rerun_loads_nothing_twice(db, landing):
    root, _ = landing
    _load_all(db, root, "b1")
    before = _counts(db)
    again = _load_all(db, root, "b2")
    assert all(r.files_loaded == [] for r in again.values())
    assert _counts(db) == before


def test_changed_file_replaces_its_rows(db, landing, tmp_path):
    root, _ = landing
    import shutil

    copy = tmp_path / "landing"
    shutil.copytree(root, copy)
    ingest.load_source(db, copy, "web", "b1")
    before = _counts(db)["web_events"]
    first = sorted((copy / "web").glob("*.jsonl"))[0]
    lines = first.read_text().splitlines()
    first.write_text(
        "\n".join(lines[:-1]) + "\n"
    )  # the source re-delivers the day, one event fewer
    result = ingest.load_source(db, copy, "web", "b2")
    assert result.files_loaded == [f"web/{first.name}"]
    assert _counts(db)["web_events"] == before - 1


def test_broken_json_line_fails_the_file_and_keeps_earlier_loads(db, tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    good = {"event_id": "e1", "visitor_id": "v1", "occurred_at": "2026-01-01T00:00:00Z"}
    (web / "events_2026-01-01.jsonl").write_text(json.dumps(good) + "\n")
    (web / "events_2026-01-02.jsonl").write_text(
        json.dumps({**good, "event_id": "e2"}) + "\n{not json\n"
    )
    with pytest.raises(
        ingest.IngestError, match=r"web/events_2026-01-02.jsonl: line 2: invalid JSON"
    ):
        ingest.load_source(db, tmp_path, "web", "b1")
    with db.connect() as conn:
        files = conn.execute("select source_file from audit.load_files").fetchall()
        rows = conn.execute("select record->>'event_id' from raw.web_events").fetchall()
    assert files == [("web/events_2026-01-01.jsonl",)]
    assert rows == [("e1",)]


def test_missing_required_field_names_the_record(db, tmp_path):
    (tmp_path / "service").mkdir()
    doc = {"tickets": [{"id": "T1", "created_at": "2026-01-01T00:00:00Z"}, {"id": "T2"}]}
    (tmp_path / "service" / "tickets_2026-01-01.json").write_text(json.dumps(doc))
    with pytest.raises(
        ingest.IngestError, match=r"record 2: required field\(s\) missing: created_at"
    ):
        ingest.load_source(db, tmp_path, "service", "b1")


def test_csv_missing_required_column_is_refused(db, tmp_path):
    day = tmp_path / "sales" / "2026-01-01"
    day.mkdir(parents=True)
    (day / "orders.csv").write_text(
        "order_id,ordered_at,status\nO1,2026-01-01T10:00:00Z,completed\n"
    )
    with pytest.raises(
        ingest.IngestError, match=r"orders.csv: line 1: required column\(s\) missing: customer_id"
    ):
        ingest.load_source(db, tmp_path, "sales", "b1")
    assert _counts(db)["sales_orders"] == 0


def test_csv_rejected_by_copy_loads_nothing_of_that_file(db, tmp_path):
    day = tmp_path / "sales" / "2026-01-01"
    day.mkdir(parents=True)
    (day / "orders.csv").write_text(
        'order_id,customer_id,ordered_at,status\nO1,C1,2026-01-01T10:00:00Z,completed\nO2,C1,"unterminated\n'
    )
    with pytest.raises(
        ingest.IngestError, match=r"sales/2026-01-01/orders.csv: the database rejected"
    ):
        ingest.load_source(db, tmp_path, "sales", "b1")
    assert _counts(db)["sales_orders"] == 0
