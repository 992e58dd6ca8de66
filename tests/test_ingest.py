import json
from datetime import UTC, datetime

import pytest

from crm360 import ingest
from crm360.core.errors import ConfigurationError
from crm360.ingest import batch, ledger, validate
from crm360.synthetic.generate import GeneratorConfig, generate


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
    # raw holds every row the drops hold (duplicates and later versions included) but the
    # malformed ones, which the quarantine holds
    quarantined = {}
    with db.connect() as conn:
        for table, n in conn.execute("select table_name, count(*) from raw._quarantine group by 1"):
            quarantined[table] = n
    assert sum(quarantined.values()) == len(manifest["malformed"])
    assert counts["sales_customers"] == manifest["customer_rows"]
    assert counts["sales_orders"] == manifest["order_rows"]
    assert counts["sales_order_lines"] == manifest["order_lines"]
    assert counts["sales_products"] == manifest["product_rows"]
    assert counts["service_tickets"] == manifest["ticket_rows"]
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


def test_broken_json_line_over_the_threshold_fails_the_batch_and_keeps_earlier_batches(db, tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    good = {"event_id": "e1", "visitor_id": "v1", "occurred_at": "2026-01-01T00:00:00Z"}
    (web / "events_2026-01-01.jsonl").write_text(json.dumps(good) + "\n")
    ingest.load_source(db, tmp_path, "web", "b0")
    (web / "events_2026-01-02.jsonl").write_text(json.dumps({**good, "event_id": "e2"}) + "\n")
    (web / "events_2026-01-03.jsonl").write_text(json.dumps({**good, "event_id": "e3"}) + "\n{not json\n")
    with pytest.raises(
        ingest.IngestError, match=r"web/events_2026-01-03.jsonl: line 2: invalid JSON .* 1 of 3 records of batch b1"
    ):
        ingest.load_source(db, tmp_path, "web", "b1")
    with db.connect() as conn:
        files = conn.execute("select source_file from audit.load_files").fetchall()
        rows = conn.execute("select record->>'event_id' from raw.web_events").fetchall()
    # the whole failed batch (both of its files) is out again; the earlier batch is untouched
    assert files == [("web/events_2026-01-01.jsonl",)]
    assert rows == [("e1",)] and _quarantine(db) == []


def test_the_threshold_counts_the_whole_batch(db, tmp_path):
    """A day with 3 % bad records passes inside a batch that is 1 % bad overall; one more bad
    record tips the batch over and it is taken back out whole."""
    web = tmp_path / "web"
    web.mkdir()
    (web / "events_2026-01-01.jsonl").write_text("\n".join(_events(200)) + "\n")
    (web / "events_2026-01-02.jsonl").write_text("\n".join(_events(97, 1000) + ["{a", "{b", "{c"]) + "\n")
    result = ingest.load_source(db, tmp_path, "web", "b1")
    assert result.rows == {"events": 297} and result.quarantined == {"events": 3}
    ledger.unload(db, ["b1"], "test")
    (web / "events_2026-01-03.jsonl").write_text("\n".join(["{d"]) + "\n" + _events(1, 5000)[0] + "\n")
    with pytest.raises(ingest.IngestError, match=r"4 of 302 records of batch b2 malformed"):
        ingest.load_source(db, tmp_path, "web", "b2")
    assert _counts(db)["web_events"] == 0 and _quarantine(db) == []


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
        ingest.IngestError, match=r"sales/2026-01-01/orders.csv: line 3: expected 4 fields, found 3; 1 of 2 records"
    ):
        ingest.load_source(db, tmp_path, "sales", "b1")
    assert _counts(db)["sales_orders"] == 0


def _events(n, start=0):
    return [json.dumps({"event_id": f"e{i}", "visitor_id": "v1", "occurred_at": "2026-01-01T00:00:00Z"})
            for i in range(start, start + n)]


def _quarantine(wh):
    with wh.connect() as conn:
        return conn.execute("select source_file, line_number, reason from raw._quarantine "
                            "order by source_file, line_number").fetchall()


def test_a_few_malformed_json_lines_are_quarantined(db, tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    lines = _events(150) + ["{broken", json.dumps({"event_id": "x"})] + _events(150, 150)
    path = web / "events_2026-01-01.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"event_id": "\xff"}\n')
    result = ingest.load_source(db, tmp_path, "web", "b1")
    assert result.rows == {"events": 300} and result.quarantined == {"events": 3}
    assert _quarantine(db) == [
        ("web/events_2026-01-01.jsonl", 151, "invalid JSON (Expecting property name enclosed in double quotes)"),
        ("web/events_2026-01-01.jsonl", 152, "required field(s) missing: visitor_id, occurred_at"),
        ("web/events_2026-01-01.jsonl", 303, "not valid UTF-8"),
    ]
    # the source re-delivers the file: quarantine and rows are replaced, not added to
    path.write_text("\n".join(_events(300) + ["{broken"]) + "\n")
    result = ingest.load_source(db, tmp_path, "web", "b2")
    assert result.rows == {"events": 300} and len(_quarantine(db)) == 1
    assert _counts(db)["web_events"] == 300
    # taking b2 back out puts back the version it replaced, quarantine included
    ledger.unload(db, ["b2"], "test")
    assert len(_quarantine(db)) == 3 and _counts(db)["web_events"] == 300


def test_malformed_csv_rows_are_quarantined_with_their_line(db, tmp_path):
    day = tmp_path / "sales" / "2026-01-01"
    day.mkdir(parents=True)
    good = [f"O{i},C1,2026-01-01T10:00:00Z,completed" for i in range(200)]
    body = "\n".join(["order_id,customer_id,ordered_at,status", *good[:100], "O_SHORT,C1", *good[100:]])
    (day / "orders.csv").write_bytes(body.encode() + b"\nO_LATIN1,C\xe9,2026-01-01T10:00:00Z,completed\n")
    result = ingest.load_source(db, tmp_path, "sales", "b1")
    assert result.rows == {"orders": 200} and result.quarantined == {"orders": 2}
    assert _quarantine(db) == [("sales/2026-01-01/orders.csv", 102, "expected 4 fields, found 2"),
                               ("sales/2026-01-01/orders.csv", 203, "not valid UTF-8")]


def test_bad_row_threshold_is_configurable(db, tmp_path, monkeypatch):
    web = tmp_path / "web"
    web.mkdir()
    (web / "events_2026-01-01.jsonl").write_text("\n".join(_events(300) + ["{broken"]) + "\n")
    monkeypatch.setenv("CRM360_MAX_BAD_ROW_FRACTION", "0")
    with pytest.raises(ingest.IngestError, match=r"line 301: invalid JSON .*1 of 301 records of batch b1 malformed"):
        ingest.load_source(db, tmp_path, "web", "b1")
    assert _counts(db)["web_events"] == 0 and _quarantine(db) == []
    monkeypatch.setenv("CRM360_MAX_BAD_ROW_FRACTION", "lots")
    with pytest.raises(ConfigurationError,
                       match="CRM360_MAX_BAD_ROW_FRACTION must be a number between 0 and 1, got 'lots'"):
        ingest.load_source(db, tmp_path, "web", "b1")


def test_new_csv_column_is_kept_in_extra_and_reported(db, tmp_path):
    day = tmp_path / "sales" / "2026-01-01"
    day.mkdir(parents=True)
    (day / "customers.csv").write_text(
        "\ufeffcustomer_id,email,created_at,loyalty_tier\nC1,a@example.com,2026-01-01T00:00:00Z,gold\n",
        encoding="utf-8")
    result = ingest.load_source(db, tmp_path, "sales", "b1")
    assert result.drift == ["sales/2026-01-01/customers.csv: loyalty_tier"]
    with db.connect() as conn:
        assert conn.execute("select customer_id, email, _extra from raw.sales_customers").fetchall() == [
            ("C1", "a@example.com", {"loyalty_tier": "gold"})]
        assert conn.execute("select table_name, column_name, change from audit.schema_drift").fetchall() == [
            ("sales_customers", "loyalty_tier", "column kept in _extra")]
        # a load changes no table's columns: the drift stays in the rows
        assert conn.execute("select count(*) from information_schema.columns where table_schema = 'raw' "
                            "and table_name = 'sales_customers' and column_name = 'loyalty_tier'").fetchone() == (0,)


def _raw_fingerprint(wh) -> dict[str, tuple[int, str]]:
    """Row count and a digest of every row, meta columns included, of each raw table and the ledger."""
    tables = ["raw.sales_customers", "raw.sales_orders", "raw.sales_order_lines", "raw.sales_products",
              "raw.service_tickets", "raw.web_events", "raw._quarantine", "audit.load_files"]
    with wh.connect() as conn:
        return {t: conn.execute(f"select count(*), md5(coalesce(string_agg(x::text, E'\\n' order by x::text), '')) "
                                f"from {t} as x").fetchone() for t in tables}  # noqa: S608 - fixed names


def test_files_loaded_one_or_several_at_a_time_give_the_same_raw(db, landing, monkeypatch):
    root, _ = landing
    at = datetime(2026, 1, 1, tzinfo=UTC)
    monkeypatch.setenv("CRM360_LOAD_WORKERS", "1")
    serial = {s: ingest.load_source(db, root, s, f"b:{s}", loaded_at=at) for s in ingest.SOURCES}
    once = _raw_fingerprint(db)
    with db.connect() as conn:
        conn.execute("truncate raw.sales_customers, raw.sales_orders, raw.sales_order_lines, raw.sales_products, "
                     "raw.service_tickets, raw.web_events, raw._quarantine, audit.load_files")
        conn.commit()
    monkeypatch.setenv("CRM360_LOAD_WORKERS", "3")
    parallel = {s: ingest.load_source(db, root, s, f"b:{s}", loaded_at=at) for s in ingest.SOURCES}
    assert _raw_fingerprint(db) == once
    assert all(once[t][0] > 0 for t in once if t != "raw._quarantine")
    for source in ingest.SOURCES:  # reported alike, files in the order they were found
        assert parallel[source].as_dict() == serial[source].as_dict()


def test_files_bringing_the_same_new_column_load_side_by_side(db, tmp_path, monkeypatch):
    """Files bringing a column the contract does not know load side by side: the values go to the rows'
    _extra, no load alters the table (so none waits on another). Every file is loaded once."""
    monkeypatch.setenv("CRM360_LOAD_WORKERS", "4")
    for day in range(1, 13):
        folder = tmp_path / "sales" / f"2026-01-{day:02d}"
        folder.mkdir(parents=True)
        rows = "".join(f"C{day}_{i},c{day}_{i}@example.com,2026-01-{day:02d}T08:00:00Z,gold\n" for i in range(500))
        (folder / "customers.csv").write_text("customer_id,email,created_at,loyalty_tier\n" + rows)
    result = ingest.load_source(db, tmp_path, "sales", "b1")
    assert len(result.files_loaded) == 12 and result.rows == {"customers": 6000}
    # files that found the column new while another had not committed it yet each report it
    assert result.drift and all(d.endswith("/customers.csv: loyalty_tier") for d in result.drift)
    with db.connect() as conn:
        assert conn.execute("select count(*), count(distinct customer_id), count(*) filter "
                            "(where _extra ->> 'loyalty_tier' = 'gold') from raw.sales_customers"
                            ).fetchone() == (6000, 6000, 6000)
        assert conn.execute("select column_name from audit.schema_drift").fetchall() == [("loyalty_tier",)]
        assert conn.execute("select count(*) from audit.load_files").fetchone()[0] == 12


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_bad_worker_count_is_refused_by_name(db, tmp_path, monkeypatch, value):
    monkeypatch.setenv("CRM360_LOAD_WORKERS", value)
    with pytest.raises(ConfigurationError, match=f"CRM360_LOAD_WORKERS must be .*, got '{value}'"):
        ingest.load_source(db, tmp_path, "sales", "b1")


def test_new_json_field_is_kept_and_reported(db, tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    event = {"event_id": "e1", "visitor_id": "v1", "occurred_at": "2026-01-01T00:00:00Z", "ab_variant": "b"}
    (web / "events_2026-01-01.jsonl").write_text(json.dumps(event) + "\n")
    result = ingest.load_source(db, tmp_path, "web", "b1")
    assert result.drift == ["web/events_2026-01-01.jsonl: ab_variant"]
    with db.connect() as conn:
        assert conn.execute("select record->>'ab_variant' from raw.web_events").fetchone() == ("b",)
        assert conn.execute("select column_name, change from audit.schema_drift").fetchall() == [
            ("ab_variant", "field kept in record")]


def test_values_that_break_the_contract_are_quarantined_with_their_line(db, tmp_path):
    """Bad dates and negative quantities pass COPY into text columns; they are taken out
    in the same transaction and quarantined with the line they came from."""
    day = tmp_path / "sales" / "2026-01-01"
    day.mkdir(parents=True)
    lines = [f"O{i},{n},P1,2,9.99" for i in range(150) for n in (1, 2)]
    lines[10] = "O5,1,P1,-3,9.99"
    lines[200] = "O100,x,P1,1,9.99"
    (day / "order_lines.csv").write_text("\n".join(["order_id,line_number,product_id,quantity,unit_price", *lines])
                                         + "\n")
    orders = [f"O{i},C1,2026-01-01T10:00:00+01:00,completed" for i in range(150)]
    orders[42] = "O42,C1,2026-02-30T10:00:00+00:00,completed"
    orders[43] = "O43,C1,yesterday,completed"
    (day / "orders.csv").write_text("\n".join(["order_id,customer_id,ordered_at,status", *orders]) + "\n")
    result = ingest.load_source(db, tmp_path, "sales", "b1")
    assert result.rows == {"order_lines": 298, "orders": 148}
    assert result.quarantined == {"order_lines": 2, "orders": 2}
    assert _quarantine(db) == [
        ("sales/2026-01-01/order_lines.csv", 12, "quantity: quantity must be a positive whole number: -3"),
        ("sales/2026-01-01/order_lines.csv", 202, "line_number: not a valid integer: x"),
        ("sales/2026-01-01/orders.csv", 44, "ordered_at: not a valid timestamptz: 2026-02-30T10:00:00+00:00"),
        ("sales/2026-01-01/orders.csv", 45, "ordered_at: not a valid timestamptz: yesterday"),
    ]
    with db.connect() as conn:
        assert conn.execute("select count(*) from raw.sales_orders where order_id in ('O42', 'O43')").fetchone() == (0,)
        assert conn.execute("select row_count from audit.load_files where source_file like '%orders.csv'"
                            ).fetchone() == (148,)


def test_bad_json_values_are_quarantined_by_record(db, tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    lines = _events(199) + [json.dumps({"event_id": "late", "visitor_id": "v", "occurred_at": "2026-13-01T00:00Z"})]
    (web / "events_2026-01-01.jsonl").write_text("\n".join(lines) + "\n")
    result = ingest.load_source(db, tmp_path, "web", "b1")
    assert result.rows == {"events": 199} and result.quarantined == {"events": 1}
    with db.connect() as conn:
        assert conn.execute("select record_number, reason from raw._quarantine").fetchall() == [
            (200, "occurred_at: not a valid timestamptz: 2026-13-01T00:00Z")]


def test_streamed_json_lines_take_malformed_records_and_bad_values_out_in_line_order(db, tmp_path, caplog):
    """On the streaming path, records that are no records (not an object, a required field missing)
    and records with values that break the contract leave raw in one pass: each quarantined with its
    own reason, in line order, the first named in the result; unknown fields count as drift on a
    record with a bad value (it is a record), not on one that is no record."""
    web = tmp_path / "web"
    web.mkdir()
    event = {"visitor_id": "v", "occurred_at": "2026-01-01T00:00:00Z"}
    lines = [*_events(250),
             json.dumps({**event, "event_id": "bad-date", "occurred_at": "2026-02-30T00:00:00Z", "campaign": "c"}),
             json.dumps({"event_id": "no-visitor", "occurred_at": "2026-01-01T00:00:00Z", "referrer": "r"}),
             json.dumps({**event, "event_id": "far", "occurred_at": "9999-01-01T00:00:00Z"}),
             json.dumps(42),
             *_events(250, start=250)]
    (web / "events_2026-01-01.jsonl").write_text("\n".join(lines) + "\n")
    caplog.set_level("INFO", logger="crm360.ingest")
    result = ingest.load_source(db, tmp_path, "web", "b1")
    assert "COPY refused" not in caplog.text, "parseable lines must take the streaming path"
    assert result.rows == {"events": 500} and result.quarantined == {"events": 4}
    assert result.drift == ["web/events_2026-01-01.jsonl: campaign"]
    rel = "web/events_2026-01-01.jsonl"
    assert _quarantine(db) == [
        (rel, 251, "occurred_at: not a valid timestamptz: 2026-02-30T00:00:00Z"),
        (rel, 252, "required field(s) missing: visitor_id"),
        (rel, 253, "occurred_at: a year outside the plausible 1900 to 2099: 9999-01-01T00:00:00Z"),
        (rel, 254, "expected a JSON object, got number"),
    ]
    with db.connect() as conn:
        assert conn.execute("select count(*), count(distinct record ->> 'event_id') from raw.web_events "
                            "where record ->> 'event_id' like 'e%'").fetchone() == (500, 500)


def test_clean_json_lines_stream_to_copy_and_keep_every_character(db, tmp_path, caplog):
    """Valid JSON lines go to COPY untouched: escapes, tabs in strings, backslashes and
    non-ASCII survive; records that parse but break the contract are still quarantined."""
    web = tmp_path / "web"
    web.mkdir()
    tricky = {"event_id": "e\\t1", "visitor_id": "v\t\"q\"", "occurred_at": "2026-01-01T00:00:00Z",
              "page": "C:\\path\\n", "email": "Zoë@Example.com"}
    lines = [json.dumps(tricky), json.dumps(tricky, ensure_ascii=False), *_events(200),
             json.dumps(["not", "an", "object"]), json.dumps({"event_id": "x", "visitor_id": ""}), "",
             json.dumps({"event_id": "y", "visitor_id": "v", "occurred_at": "2026-01-01T00:00:00Z", "ab": 1})]
    (web / "events_2026-01-01.jsonl").write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    caplog.set_level("INFO", logger="crm360.ingest")
    result = ingest.load_source(db, tmp_path, "web", "b1")
    assert "COPY refused" not in caplog.text, "a clean file must take the streaming path"
    assert result.rows == {"events": 203} and result.quarantined == {"events": 2}
    assert result.drift == ["web/events_2026-01-01.jsonl: ab"]
    assert _quarantine(db) == [
        ("web/events_2026-01-01.jsonl", 203, "expected a JSON object, got array"),
        ("web/events_2026-01-01.jsonl", 204, "required field(s) missing: visitor_id, occurred_at"),
    ]
    with db.connect() as conn:
        stored = conn.execute("select _record_number, record from raw.web_events "
                              "where _record_number in (1, 2, 206) order by 1").fetchall()
    assert stored == [(1, tricky), (2, tricky), (206, json.loads(lines[-1]))]


def test_a_rejected_value_the_second_read_cannot_place_is_still_quarantined(db, tmp_path, monkeypatch):
    """Nothing COPY loaded may vanish: if finding a rejected record's line fails, the record
    is quarantined without a line rather than dropped."""
    day = tmp_path / "sales" / "2026-01-01"
    day.mkdir(parents=True)
    rows = [f"O{i},C1,2026-01-01T10:00:00Z,completed" for i in range(199)]
    rows.append("O_BAD,C1,2026-02-30T10:00:00Z,completed")
    (day / "orders.csv").write_text("\n".join(["order_id,customer_id,ordered_at,status", *rows]) + "\n")
    monkeypatch.setattr(validate, "locate", lambda *args: iter(()))
    result = ingest.load_source(db, tmp_path, "sales", "b1")
    assert result.rows == {"orders": 199} and result.quarantined == {"orders": 1}
    with db.connect() as conn:
        assert conn.execute("select line_number, reason, raw_record from raw._quarantine").fetchall() == [
            (None, "ordered_at: not a valid timestamptz: 2026-02-30T10:00:00Z",
             "O_BAD,C1,2026-02-30T10:00:00Z,completed")]


SOURCE_FILE_COLLATIONS = """
    select t.relname, c.collname from pg_attribute a
        join pg_class t on t.oid = a.attrelid join pg_namespace n on n.oid = t.relnamespace
        join pg_collation c on c.oid = a.attcollation
    where n.nspname = 'raw' and t.relkind in ('r', 'i') and a.attname = '_source_file'
    order by 1
"""


def test_source_files_sort_bytewise_and_are_found_by_brin(db, tmp_path):
    """_source_file compares bytewise in every raw table and is indexed with BRIN (tables of 0.1 with
    the database's collation and a btree are upgraded by migration 0001: test_migrations.py). Each
    load summarizes the ranges it filled, so a lookup by file reads that file's pages, not the table,
    and a changed file still reloads in place."""
    web = tmp_path / "web"
    web.mkdir()
    (web / "events_2026-01-01.jsonl").write_text("\n".join(_events(50)) + "\n")
    ingest.load_source(db, tmp_path, "web", "b1")
    with db.connect() as conn:
        found = conn.execute(SOURCE_FILE_COLLATIONS).fetchall()
        assert {name for name, _ in found} >= {"web_events", "web_events__source_file_brin", "sales_orders"}
        assert {collation for _, collation in found} == {"C"}
    # 20 more days: each file's rows fill pages of their own (two files at a time may share some),
    # and the ranges are summarized as they are loaded
    for day in range(2, 22):
        (web / f"events_2026-01-{day:02d}.jsonl").write_text("\n".join(_events(2000, start=day * 10_000)) + "\n")
    ingest.load_source(db, tmp_path, "web", "b2")
    with db.connect() as conn:
        pages = conn.execute("select pg_relation_size('raw.web_events') / 8192").fetchone()[0]
        conn.execute("set enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(
            "explain (analyze, costs off) select count(*) from raw.web_events "
            "where _source_file = 'web/events_2026-01-12.jsonl'"))
        assert "web_events__source_file_brin" in plan, plan
        read = int(plan.split("Heap Blocks: lossy=")[1].split()[0])
        assert read <= pages / 4, (read, pages, plan)  # unsummarized ranges would all be read
    (web / "events_2026-01-01.jsonl").write_text("\n".join(_events(60)) + "\n")
    result = ingest.load_source(db, tmp_path, "web", "b3")
    assert result.rows == {"events": 60} and result.files_loaded == ["web/events_2026-01-01.jsonl"]
    with db.connect() as conn:
        assert conn.execute("select count(*), count(distinct record ->> 'event_id') from raw.web_events "
                            "where _source_file = 'web/events_2026-01-01.jsonl'").fetchone() == (60, 60)
        assert conn.execute("select count(*) from raw.web_events").fetchone() == (60 + 20 * 2000,)


def test_summarizing_source_files_is_skipped_for_a_role_that_does_not_own_raw(db, tmp_path):
    """brin_summarize_new_values needs the index's owner: the loader role (which may write raw but
    owns nothing) gets no error and summarizes nothing; the owner summarizes the new ranges."""
    from crm360.core import access

    web = tmp_path / "web"
    web.mkdir()
    (web / "events_2026-01-01.jsonl").write_text("\n".join(_events(2000)) + "\n")
    ingest.load_source(db, tmp_path, "web", "b1")  # summarized as loaded
    left_to_summarize = "select brin_summarize_new_values('raw.web_events__source_file_brin')"

    def write_a_day(conn, day: int) -> None:  # rows written without summarizing
        conn.execute("select set_config('crm360.batch_id', 'b', true), set_config('crm360.loaded_at', now()::text, "
                     "true), set_config('crm360.source_file', %s, true)", (f"web/events_2026-01-{day:02d}.jsonl",))
        conn.execute("insert into raw.web_events (_record_number, record) select n, jsonb_build_object("
                     "'event_id', %s || n, 'visitor_id', 'v', 'occurred_at', '2026-01-02T00:00:00Z') "
                     "from generate_series(1, 2000) as n", (f"d{day}-",))
        conn.commit()

    with db.connect() as conn:
        assert conn.execute(left_to_summarize).fetchone() == (0,)
        write_a_day(conn, 2)
    with access.as_role(db, access.LOADER).connect() as conn:
        batch.summarize_source_files(conn, "web_events")  # not the owner: no error, nothing done
        conn.commit()
    with db.connect() as conn:
        assert conn.execute(left_to_summarize).fetchone()[0] > 0  # the loader left them
        write_a_day(conn, 3)
        batch.summarize_source_files(conn, "web_events")
        conn.commit()
        assert conn.execute(left_to_summarize).fetchone() == (0,)  # the owner did them


def test_loads_of_different_sources_never_wait_for_each_other(external_server, fresh_db, tmp_path, monkeypatch):
    """Day two under a scheduler: every source reloads changed files (deleting its raw and quarantine
    rows) while the others do the same. One source's load is held open inside a file's transaction;
    the other two load meanwhile, and no session ever waits for a lock."""
    import threading
    import time

    wh = fresh_db(external_server)
    landing = tmp_path / "landing"
    generate(landing, GeneratorConfig.preset("tiny", seed=8))  # with malformed records: quarantine rows
    for source in ingest.SOURCES:
        ingest.load_source(wh, landing, source, f"day1:{source}")
    for pattern in ("sales/*/orders.csv", "service/tickets_*.json", "web/events_*.jsonl"):
        for path in sorted(landing.glob(pattern))[-3:]:  # changed bytes, same records: reloaded, old rows deleted
            path.write_bytes(path.read_bytes() + (b" " if path.suffix == ".json" else b"\n"))
    inside, release = threading.Event(), threading.Event()
    summarize = batch.summarize_source_files

    def held(conn, table):  # sales' first file: rows deleted and copied, transaction open
        if table.startswith("sales_") and not inside.is_set():
            inside.set()
            release.wait(120)
        return summarize(conn, table)

    monkeypatch.setattr(batch, "summarize_source_files", held)
    outcome: dict = {}
    sales = threading.Thread(target=lambda: outcome.setdefault("sales", ingest.load_source(
        wh, landing, "sales", "day2:sales")))
    sales.start()
    assert inside.wait(60)
    waits, stop = [], threading.Event()

    def watch() -> None:
        with wh.connect(autocommit=True) as conn:
            while not stop.is_set():
                waits.extend(conn.execute("select query from pg_stat_activity where datname = current_database() "
                                          "and wait_event_type = 'Lock'").fetchall())
                time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for source in ("service", "web"):
            outcome[source] = ingest.load_source(wh, landing, source, f"day2:{source}")
        assert sales.is_alive()  # the others finished while sales held its transaction open
    finally:
        stop.set()
        release.set()
        watcher.join()
        sales.join(120)
    assert waits == []
    assert all(len(outcome[s].files_loaded) == 3 for s in ingest.SOURCES), {s: r.as_dict() for s, r in outcome.items()}
