"""Bad input through the real loader: each gives a clear error naming file, line and reason
(also on the command line, as one line without a traceback) or a quarantined record with
its file, line and reason; nothing loaded earlier is lost or duplicated, and the fixed file
then loads. (Broken JSON lines, short CSV rows, impossible dates, the bad-row threshold and
schema drift are in test_ingest.py; bad batches that reach the gates in test_bad_batches.py.)"""

import gzip
import hashlib
import json
import re
import time
import tracemalloc
from datetime import date

import pytest
from conftest import REPO, make_settings

from crm360 import cli, ingest
from crm360.core.errors import ConfigurationError
from crm360.ingest import ledger
from crm360.ingest.sources import load_config
from crm360.transform import dbt

DAY, BAD_DAY, AS_OF = "2026-03-01", "2026-03-02", date(2026, 3, 3)
RAW_TABLES = ("sales_products", "sales_customers", "sales_orders", "sales_order_lines", "service_tickets",
              "web_events")
GIB = 1 << 30

CUSTOMERS_HEADER = "customer_id,account_type,first_name,last_name,email,phone,city,region,country_code,created_at"
ORDERS_HEADER = "order_id,customer_id,ordered_at,status,currency"


def _event(i, **fields):
    return json.dumps({"event_id": f"e{i}", "visitor_id": f"v{i}", "event_type": "page_view",
                       "page": "/", "occurred_at": f"{DAY}T10:00:00Z", **fields})


def _ticket(i, **fields):
    return {"id": f"T{i}", "type": "question", "status": "open", "created_at": f"{DAY}T09:00:00Z",
            "requester": {"email": f"p{i}@example.com", "name": f"Person {i}"}, **fields}


def _orders(n, start=0, day=DAY):
    return [f"O{i},C{i % 3},{day}T10:00:00Z,completed,EUR" for i in range(start, start + n)]


def _write_baseline(root):
    sales = root / "sales" / DAY
    sales.mkdir(parents=True)
    (sales / "products.csv").write_text("product_id,product_name,category,list_price\nP1,Mug,home,9.50\n")
    (sales / "customers.csv").write_text("\n".join(
        [CUSTOMERS_HEADER] + [f"C{i},registered,Ann,Lee,c{i}@example.com,,Berlin,BE,DE,{DAY}T08:00:00Z"
                              for i in range(3)]) + "\n")
    (sales / "orders.csv").write_text("\n".join([ORDERS_HEADER, *_orders(3)]) + "\n")
    (sales / "order_lines.csv").write_text("order_id,line_number,product_id,quantity,unit_price\nO0,1,P1,2,9.50\n")
    (root / "service").mkdir()
    (root / "service" / f"tickets_{DAY}.json").write_text(json.dumps({"tickets": [_ticket(1), _ticket(2)]}))
    (root / "web").mkdir()
    (root / "web" / f"events_{DAY}.jsonl").write_text("\n".join(_event(i) for i in range(5)) + "\n")


@pytest.fixture
def wh(external_server, fresh_db):
    return fresh_db(external_server)


@pytest.fixture
def landing(wh, tmp_path):
    """Drops of one good day, loaded and gated (as a run that passed its raw gate leaves them)."""
    root = tmp_path / "landing"
    _write_baseline(root)
    for source in ingest.SOURCES:
        ingest.load_source(wh, root, source, f"base:{source}")
    ledger.gated(wh, [f"base:{source}" for source in ingest.SOURCES])
    return root


def _snapshot(wh):
    """Rows per raw table and file, the quarantine per file and reason, and the load ledger."""
    with wh.connect() as conn:
        rows = {t: conn.execute(f"select _source_file, count(*) from raw.{t} group by 1 order by 1").fetchall()  # noqa: S608
                for t in RAW_TABLES}
        quarantine = conn.execute("select source_file, line_number, record_number, reason from raw._quarantine "
                                  "order by 1, 2, 3").fetchall()
        ledger = conn.execute("select source_file, sha256, row_count, batch_id from audit.load_files order by 1"
                              ).fetchall()
    return {"rows": rows, "quarantine": quarantine, "ledger": ledger}


def _of(snapshot, day=DAY):
    """The part of a snapshot that the given day's files made."""
    return {"rows": {t: [r for r in rows if day in r[0]] for t, rows in snapshot["rows"].items()},
            "quarantine": [q for q in snapshot["quarantine"] if day in q[0]],
            "ledger": [entry for entry in snapshot["ledger"] if day in entry[0]]}


def _quarantined(wh, rel):
    with wh.connect() as conn:
        return conn.execute("select line_number, record_number, reason from raw._quarantine where source_file = %s "
                            "order by coalesce(line_number, record_number)", (rel,)).fetchall()


def _refused(wh, landing, source, match, config=None):
    """The load fails with ``match``; the warehouse is exactly as before."""
    before = _snapshot(wh)
    with pytest.raises(ingest.IngestError, match=match) as caught:
        ingest.load_source(wh, landing, source, f"bad:{source}", config=config)
    assert _snapshot(wh) == before, "a refused file must leave every earlier load as it was"
    return str(caught.value)


def _cli_error(wh, landing, tmp_path, monkeypatch, capsys, sources_yml=None):
    """``crm360 run`` on the landing: exit code 1 and the error on one line, no traceback."""
    monkeypatch.setenv("CRM360_WAREHOUSE_URL", wh.conninfo)
    monkeypatch.setenv("CRM360_LANDING_DIR", str(landing))
    monkeypatch.setenv("CRM360_HOME", str(tmp_path / "home"))
    if sources_yml:
        monkeypatch.setenv("CRM360_SOURCES", str(sources_yml))
    capsys.readouterr()
    assert cli.main(["run", "--as-of", AS_OF.isoformat()]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    first, *notes = err.splitlines()
    assert first.startswith("crm360 run: error: ")
    assert all(n.startswith("run health report: ") for n in notes), notes
    return first.removeprefix("crm360 run: error: ")


# --------------------------------------------------------------------------- empty files

def test_empty_files(wh, landing, tmp_path, monkeypatch, capsys):
    """An empty CSV has no header: refused. An empty JSON-lines file is a day without
    records: loaded as zero rows. An empty JSON document is not JSON: refused."""
    orders = landing / "sales" / BAD_DAY / "orders.csv"
    orders.parent.mkdir()
    orders.write_bytes(b"")
    rel = f"sales/{BAD_DAY}/orders.csv"
    _refused(wh, landing, "sales", rf"^{rel}: line 1: empty file, expected a CSV header$")
    assert _cli_error(wh, landing, tmp_path, monkeypatch, capsys) == \
        f"{rel}: line 1: empty file, expected a CSV header"
    orders.write_text(ORDERS_HEADER + "\n")  # header only: a day without orders
    assert ingest.load_source(wh, landing, "sales", "fixed:sales").rows == {"orders": 0}

    tickets = landing / "service" / f"tickets_{BAD_DAY}.json"
    tickets.write_bytes(b"")
    _refused(wh, landing, "service", rf"^service/tickets_{BAD_DAY}.json: line 1: invalid JSON \(Expecting value\); "
                                     "nothing from it was loaded$")
    tickets.write_text(json.dumps({"tickets": [_ticket(3)]}))
    assert ingest.load_source(wh, landing, "service", "fixed:service").rows == {"tickets": 1}

    before = _snapshot(wh)
    (landing / "web" / f"events_{BAD_DAY}.jsonl").write_bytes(b"")
    result = ingest.load_source(wh, landing, "web", "empty:web")
    assert result.files_loaded == [f"web/events_{BAD_DAY}.jsonl"] and result.rows == {"events": 0}
    after = _snapshot(wh)
    assert after["rows"] == before["rows"] and after["ledger"][-1][2:] == (0, "empty:web")


# --------------------------------------------------------------------------- compressed drops

def _gzip_config(tmp_path):
    """sources.yml with the web events read from gzip files."""
    text = ((REPO / "sources.yml").read_text()
            .replace('events: {pattern: "events_*.jsonl", format: jsonl}',
                     'events: {pattern: "events_*.jsonl*", format: jsonl}'))
    path = tmp_path / "sources_gzip.yml"
    path.write_text(text)
    return path


def test_truncated_or_corrupt_gzip_is_refused_and_the_whole_file_loads_later(wh, landing, tmp_path, monkeypatch,
                                                                            capsys):
    sources_yml = _gzip_config(tmp_path)
    config = load_config(sources_yml)
    lines = "".join(_event(i) + "\n" for i in range(100, 400)).encode()
    whole = gzip.compress(lines)
    path = landing / "web" / f"events_{BAD_DAY}.jsonl.gz"
    rel = f"web/events_{BAD_DAY}.jsonl.gz"

    path.write_bytes(whole[: len(whole) // 2])  # the transfer stopped half way
    message = _refused(wh, landing, "web", rf"^{rel}: the gzip file is truncated or corrupt \(.+\); nothing from "
                                           "it was loaded$", config)
    assert "end-of-stream marker" in message
    assert _cli_error(wh, landing, tmp_path, monkeypatch, capsys, sources_yml) == message

    path.write_bytes(b"this is not gzip at all\n" * 10)
    _refused(wh, landing, "web", rf"^{rel}: the gzip file is truncated or corrupt \(Not a gzipped file", config)

    path.write_bytes(whole)  # delivered again, complete
    result = ingest.load_source(wh, landing, "web", "fixed:web", config=config)
    assert result.files_loaded == [rel] and result.rows == {"events": 300}
    with wh.connect() as conn:
        assert conn.execute("select count(*), count(distinct record->>'event_id') from raw.web_events "
                            "where _source_file = %s", (rel,)).fetchone() == (300, 300)
        # the ledger's checksum is the stored file's: an unchanged gzip is skipped without decompressing
        assert conn.execute("select sha256 from audit.load_files where source_file = %s", (rel,)).fetchone()[0] \
            == hashlib.sha256(whole).hexdigest()
    assert ingest.load_source(wh, landing, "web", "again:web", config=config).files_skipped[-1] == rel


# --------------------------------------------------------------------------- wrong encoding

def test_files_in_another_encoding(wh, landing, tmp_path, monkeypatch, capsys):
    """UTF-16 fails at its header; a Latin-1 export fails as unreadable (every accented row
    is not UTF-8), and so do JSON files in either; a single Latin-1 row in a large UTF-8 file
    is quarantined with its line."""
    day = landing / "sales" / BAD_DAY
    day.mkdir()
    rows = [f"C{i},registered,Zoë,Müller,z{i}@example.com,,Köln,NW,DE,{BAD_DAY}T08:00:00Z" for i in range(10, 14)]
    customers = day / "customers.csv"
    rel = f"sales/{BAD_DAY}/customers.csv"

    customers.write_bytes("\n".join([CUSTOMERS_HEADER, *rows]).encode("utf-16"))
    _refused(wh, landing, "sales", rf"^{rel}: line 1: the header is not valid UTF-8$")

    customers.write_bytes("\n".join([CUSTOMERS_HEADER, *rows]).encode("latin-1"))
    expected = f"{rel}: line 2: not valid UTF-8; 4 of 4 records malformed (100.0%); nothing from the file was loaded"
    assert _refused(wh, landing, "sales", "not valid UTF-8") == expected
    assert _cli_error(wh, landing, tmp_path, monkeypatch, capsys) == expected

    # JSON: a document is read whole, so it fails at the first byte that is not UTF-8; JSON lines
    # in UTF-16 are not UTF-8 on any line
    tickets = landing / "service" / f"tickets_{BAD_DAY}.json"
    tickets.write_bytes(json.dumps({"tickets": [_ticket(7, subject="Grüße")]}, ensure_ascii=False).encode("latin-1"))
    _refused(wh, landing, "service", rf"^service/tickets_{BAD_DAY}.json: byte \d+: the file is not valid UTF-8; "
                                     "nothing from it was loaded$")
    tickets.unlink()
    (landing / "web" / f"events_{BAD_DAY}.jsonl").write_bytes("\n".join(_event(i) for i in range(70, 75)).encode(
        "utf-16"))
    _refused(wh, landing, "web", rf"^web/events_{BAD_DAY}.jsonl: line 1: not valid UTF-8; 5 of 5 records malformed")
    (landing / "web" / f"events_{BAD_DAY}.jsonl").unlink()

    good = [f"C{i},registered,Zoë,Müller,z{i}@example.com,,Köln,NW,DE,{BAD_DAY}T08:00:00Z" for i in range(20, 220)]
    customers.write_bytes("\n".join([CUSTOMERS_HEADER, *good]).encode() + b"\n" + rows[0].encode("latin-1") + b"\n")
    result = ingest.load_source(wh, landing, "sales", "mixed:sales")
    assert result.rows == {"customers": 200} and result.quarantined == {"customers": 1}
    assert _quarantined(wh, rel) == [(202, 201, "not valid UTF-8")]
    with wh.connect() as conn:
        assert conn.execute("select distinct first_name || ' ' || last_name || ', ' || city from raw.sales_customers "
                            "where _source_file = %s", (rel,)).fetchall() == [("Zoë Müller, Köln",)]


# --------------------------------------------------------------------------- a 1 GB line

def _sparse_file(path, prefix: bytes, size: int = GIB):
    """``prefix``, then NUL bytes up to ``size`` without a line end: written in a moment, read in full."""
    with open(path, "wb") as fh:
        fh.write(prefix)
        fh.truncate(size)


def _bounded(load):
    """Run ``load``; return (seconds, peak Python memory in MiB)."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        load()
    finally:
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] / (1 << 20)
        tracemalloc.stop()
    return seconds, peak


@pytest.mark.parametrize("kind", ["jsonl", "csv row", "csv header"])
def test_a_one_gigabyte_line_fails_its_file_without_reading_it_into_memory(wh, landing, tmp_path, monkeypatch,
                                                                           capsys, kind):
    """A 1 GiB line is no record but a broken export: the file fails as soon as the line
    passes CRM360_MAX_RECORD_BYTES (16 MiB), with the line named; memory stays near the limit."""
    limit = ingest.MAX_RECORD_DEFAULT
    if kind == "jsonl":
        source, rel, line = "web", f"web/events_{BAD_DAY}.jsonl", 2
        path = landing / rel
        _sparse_file(path, (_event(50) + '\n{"event_id": "e51", "page": "').encode())
    else:
        source, rel = "sales", f"sales/{BAD_DAY}/orders.csv"
        path = landing / rel
        path.parent.mkdir()
        line = 1 if kind == "csv header" else 3
        _sparse_file(path, b"order_id,customer_id" if line == 1 else
                     "\n".join([ORDERS_HEADER, _orders(1, 50, BAD_DAY)[0], "O51,C1,"]).encode())
    expected = (f"{rel}: line {line}: longer than {limit} bytes (CRM360_MAX_RECORD_BYTES): not a record but a "
                "broken export (missing line ends, or binary data); nothing from the file was loaded")
    seconds, peak = _bounded(lambda: _refused(wh, landing, source, f"^{re.escape(expected)}$"))
    assert peak < 4 * limit / (1 << 20), f"{peak:.0f} MiB held for a {limit >> 20} MiB limit"
    assert seconds < 30, seconds  # the checksum reads the file once; nothing past the limit is parsed
    if kind == "jsonl":
        assert _cli_error(wh, landing, tmp_path, monkeypatch, capsys) == expected
        path.write_text(_event(50) + "\n" + _event(51) + "\n")
        assert ingest.load_source(wh, landing, source, "fixed").rows == {"events": 2}


def test_the_record_size_limits_are_settings(wh, landing, monkeypatch):
    """The same check with a lower limit: a line in the middle of a file (of COPY's chunks,
    and of the line-by-line reader), and a JSON document larger than CRM360_MAX_DOCUMENT_BYTES."""
    monkeypatch.setenv("CRM360_MAX_RECORD_BYTES", "300")
    orders = landing / "sales" / BAD_DAY / "orders.csv"
    orders.parent.mkdir()
    rows = _orders(40, 100, BAD_DAY)
    rows[20] = rows[20].replace("completed", "completed" + " " * 300)
    orders.write_text("\n".join([ORDERS_HEADER, *rows]) + "\n")
    _refused(wh, landing, "sales", rf"^sales/{BAD_DAY}/orders.csv: line 22: longer than 300 bytes")
    events = landing / "web" / f"events_{BAD_DAY}.jsonl"
    events.write_text("\n".join([_event(60), _event(61, page="/" + "x" * 300), "{broken"]) + "\n")
    _refused(wh, landing, "web", rf"^web/events_{BAD_DAY}.jsonl: line 2: longer than 300 bytes")
    monkeypatch.setenv("CRM360_MAX_DOCUMENT_BYTES", "1000")
    (landing / "service" / f"tickets_{BAD_DAY}.json").write_text(json.dumps({"tickets": [_ticket(i)
                                                                                       for i in range(10)]}))
    _refused(wh, landing, "service", rf"^service/tickets_{BAD_DAY}.json: the JSON document is larger than 1000 "
                                     r"bytes \(CRM360_MAX_DOCUMENT_BYTES\)")
    monkeypatch.setenv("CRM360_MAX_RECORD_BYTES", "lots")
    with pytest.raises(ConfigurationError, match="CRM360_MAX_RECORD_BYTES must be a whole number of bytes"):
        ingest.load_source(wh, landing, "web", "x")
    monkeypatch.delenv("CRM360_MAX_RECORD_BYTES")
    monkeypatch.delenv("CRM360_MAX_DOCUMENT_BYTES")
    events.write_text("\n".join([_event(60), _event(61, page="/" + "x" * 300)]) + "\n")
    assert ingest.load_source(wh, landing, "web", "fixed").rows == {"events": 2}


# --------------------------------------------------------------------------- CSV columns

def test_csv_with_extra_or_missing_columns(wh, landing, tmp_path, monkeypatch, capsys):
    """A row with more or fewer fields than the header is quarantined with its line; a header
    without an optional column loads (the column stays empty); without a required one the file
    is refused; a new column is kept and reported as drift."""
    day = landing / "sales" / BAD_DAY
    day.mkdir()
    orders = day / "orders.csv"
    rel = f"sales/{BAD_DAY}/orders.csv"
    rows = _orders(300, 100, BAD_DAY)
    rows[50] += ",surplus"
    rows[120] = rows[120].rsplit(",", 2)[0]
    orders.write_text("\n".join([ORDERS_HEADER, *rows]) + "\n")
    result = ingest.load_source(wh, landing, "sales", "ragged:sales")
    assert result.rows == {"orders": 298}
    assert _quarantined(wh, rel) == [(52, 51, "expected 5 fields, found 6"), (122, 121, "expected 5 fields, found 3")]

    orders.write_text("order_id,ordered_at,status\n" + "".join(f"O{i},{BAD_DAY}T10:00:00Z,completed\n"
                                                               for i in range(5)))
    expected = f"{rel}: line 1: required column(s) missing: customer_id"
    assert _refused(wh, landing, "sales", "required column") == expected
    assert _cli_error(wh, landing, tmp_path, monkeypatch, capsys) == expected

    orders.write_text("order_id,customer_id,ordered_at,status,gift_wrap\n" + "".join(
        f"O{i},C1,{BAD_DAY}T10:00:00Z,completed,yes\n" for i in range(5)))  # no currency; a new column
    result = ingest.load_source(wh, landing, "sales", "fixed:sales")
    assert result.rows == {"orders": 5} and result.drift == [f"{rel}: gift_wrap"]
    with wh.connect() as conn:
        assert conn.execute("select count(*), count(currency), min(_extra ->> 'gift_wrap') from raw.sales_orders "
                            "where _source_file = %s", (rel,)).fetchone() == (5, 0, "yes")
    assert _of(_snapshot(wh))["rows"]["sales_orders"] == [(f"sales/{DAY}/orders.csv", 3)]


# --------------------------------------------------------------------------- JSON types

WRONG_TYPES = [  # (record fields, reason)
    ({"event_id": {"id": 1}}, "event_id: expected a string or number, got object"),
    ({"visitor_id": ["v1", "v2"]}, "visitor_id: expected a string or number, got array"),
    ({"event_id": True}, "event_id: expected a string or number, got boolean"),
    ({"occurred_at": False}, "occurred_at: expected a string or number, got boolean"),
    ({"occurred_at": {"at": "2026-03-02"}}, "occurred_at: expected a string or number, got object"),
    ({"occurred_at": "2026-03-02"}, None),  # a date alone is a valid moment (midnight UTC): loaded
]


@pytest.mark.parametrize("fast", [True, False], ids=["streamed", "checked"])
def test_json_with_unexpected_types_is_quarantined_with_the_field(wh, landing, fast):
    """Ids that are objects, arrays or booleans and timestamps that are numbers, booleans or
    objects are quarantined, naming the field, on both paths a JSON-lines file can take
    (streamed to COPY; checked line by line once COPY refuses the file, here for a broken line).
    Fields crm360 reads as text accept numbers: a numeric customer id is a customer id."""
    lines = [_event(1000 + i) for i in range(1000)]
    for i, (fields, _) in enumerate(WRONG_TYPES):
        lines[10 * (i + 1)] = _event(2000 + i, **fields)
    # a number where a timestamp is expected is still only text to PostgreSQL: not a timestamp
    lines[100] = _event(3000, occurred_at=1767225600)
    lines[5] = _event(5000, customer_id=12345, page=None)
    if not fast:
        lines[999] = "{broken"
    rel = f"web/events_{BAD_DAY}.jsonl"
    (landing / rel).write_text("\n".join(lines) + "\n")
    result = ingest.load_source(wh, landing, "web", "types:web")
    expected = [(10 * (i + 1) + 1, 10 * (i + 1) + 1, reason) for i, (_, reason) in enumerate(WRONG_TYPES) if reason]
    expected.append((101, 101, "occurred_at: not a valid timestamptz: 1767225600"))
    if not fast:
        expected.append((1000, 1000, "invalid JSON (Expecting property name enclosed in double quotes)"))
    assert _quarantined(wh, rel) == expected
    assert result.rows == {"events": 1000 - len(expected)}
    with wh.connect() as conn:
        assert conn.execute("select record->'customer_id', record->'page' from raw.web_events "
                            "where record->>'event_id' = 'e5000'").fetchone() == (12345, None)


def test_json_documents_with_unexpected_types(wh, landing):
    tickets = [_ticket(100 + i) for i in range(500)]
    tickets[3] = _ticket(3, satisfaction="five")
    tickets[4] = _ticket(4, satisfaction=4.5)
    tickets[5] = {**_ticket(5), "id": {"number": 5}}
    tickets[6] = _ticket(6, requester="someone@example.com")  # a string where an object was expected: no e-mail
    tickets[7] = ["not", "a", "ticket"]
    rel = f"service/tickets_{BAD_DAY}.json"
    (landing / rel).write_text(json.dumps({"tickets": tickets}))
    result = ingest.load_source(wh, landing, "service", "types:service")
    assert _quarantined(wh, rel) == [(None, 4, "satisfaction: not a valid smallint: five"),
                                     (None, 5, "satisfaction: not a valid smallint: 4.5"),
                                     (None, 6, "id: expected a string or number, got object"),
                                     (None, 8, "expected a JSON object, got array")]
    assert result.rows == {"tickets": 496}


# --------------------------------------------------------------------------- dates far away

def test_dates_far_in_the_past_or_future_are_quarantined(wh, landing):
    """Valid timestamps dated before 1900 or after 2099 are sentinels or typos, never a real
    order, visit or sign-up: quarantined with the field and value. (A date shortly after the
    run's date is a batch-wide clock or time-zone fault: the raw gate stops that batch,
    see test_bad_batches.shifted_time_zone.)"""
    far = ["0001-01-01T00:00:00Z", "0044-03-15 BC", "1899-12-31T23:59:59Z", "2100-01-01T00:00:00Z",
           "9999-12-31T23:59:59Z", "10000-01-01T00:00:00Z", "2020-06-01 bc"]
    # the usual value is settled by a cheap test, the rest by the full one: both kinds kept
    near = ["1900-01-01T00:00:00Z", "2099-12-31T23:59:59Z", " 2020-06-01T00:00:00Z", "2020-6-1 10:00+02"]
    day = landing / "sales" / BAD_DAY
    day.mkdir()
    rows = _orders(800, 100, BAD_DAY)
    for i, moment in enumerate(far + near):
        rows[10 * (i + 1)] = f"O_FAR{i},C1,{moment},completed,EUR"
    (day / "orders.csv").write_text("\n".join([ORDERS_HEADER, *rows]) + "\n")
    customers = [f"C{i},registered,A,B,a{i}@example.com,,X,Y,DE,{BAD_DAY}T08:00:00Z" for i in range(100, 300)]
    customers[7] = "C_OLD,registered,A,B,old@example.com,,X,Y,DE,1800-01-01T00:00:00Z"
    (day / "customers.csv").write_text("\n".join([CUSTOMERS_HEADER, *customers]) + "\n")
    events = [_event(3000 + i) for i in range(200)]
    events[9] = _event(3999, occurred_at="9999-12-31T23:59:59Z")
    (landing / "web" / f"events_{BAD_DAY}.jsonl").write_text("\n".join(events) + "\n")

    sales = ingest.load_source(wh, landing, "sales", "far:sales")
    web = ingest.load_source(wh, landing, "web", "far:web")
    assert sales.quarantined == {"orders": len(far), "customers": 1} and web.quarantined == {"events": 1}
    assert _quarantined(wh, f"sales/{BAD_DAY}/orders.csv") == [
        (10 * (i + 1) + 2, 10 * (i + 1) + 1, f"ordered_at: a year outside the plausible 1900 to 2099: {m}")
        for i, m in enumerate(far)]
    assert _quarantined(wh, f"sales/{BAD_DAY}/customers.csv") == [
        (9, 8, "created_at: a year outside the plausible 1900 to 2099: 1800-01-01T00:00:00Z")]
    assert _quarantined(wh, f"web/events_{BAD_DAY}.jsonl") == [
        (10, 10, "occurred_at: a year outside the plausible 1900 to 2099: 9999-12-31T23:59:59Z")]
    with wh.connect() as conn:
        kept = conn.execute("select ordered_at from raw.sales_orders where order_id like 'O_FAR%' order by 1"
                            ).fetchall()
    assert kept == sorted((m,) for m in near)


# --------------------------------------------------------------------------- Unicode and NUL

UNICODE_NAMES = [
    ("Zoe\u0308", "Mu\u0308ller"),  # combining diaeresis, not the precomposed letters
    ("محمد", "عبد الله"),  # right to left
    ("שָׁלוֹם", "כֹּהֵן"),  # Hebrew with points
    ("🦄 Ünï", "👩\u200d👩\u200d👧 Family"),  # emoji, a zero-width-joiner sequence
    ("\u202eevil", "Iı İi"),  # a right-to-left override; Turkish dotted and dotless i
    ("山田", "太郎"),
]
# SQL-looking strings: COPY and bound parameters carry them as data, never as statements
SQL_STRINGS = ["'); drop table raw.sales_customers; --", "Robert'); DROP TABLE students;--",
               "\" OR 1=1 --", "x'; select pg_sleep(10); --", "$$; drop schema raw cascade; $$", "\\'; --"]


def _csv_field(value):
    return '"' + value.replace('"', '""') + '"'


@pytest.fixture
def hostile(wh, landing, tmp_path):
    """A day whose every text field holds a Unicode name or a SQL-looking string, loaded, and
    the staging models built from it (dbt, the models reading raw only)."""
    day = landing / "sales" / BAD_DAY
    day.mkdir()
    values = [v for pair in UNICODE_NAMES for v in pair] + SQL_STRINGS
    people = []
    for i, text in enumerate(values):
        other = values[(i + 1) % len(values)]
        people.append({"customer_id": f"C_{i}_{text}", "first_name": text, "last_name": other, "email":
                       f"u{i}@example.com", "phone": text, "city": other, "region": text})
    filler = [{"customer_id": f"C_F{i}", "first_name": "F", "last_name": "L", "email": f"f{i}@example.com",
               "phone": "", "city": "C", "region": "R"} for i in range(200)]
    nul_line = len(people) + len(filler) + 2
    header = "customer_id,first_name,last_name,email,phone,city,region,created_at,'); drop table raw.x; --"
    lines = [header] + [",".join(_csv_field(p[k]) for k in ("customer_id", "first_name", "last_name", "email",
                                                             "phone", "city", "region"))
                        + f",{BAD_DAY}T08:00:00Z,{_csv_field(p['first_name'])}" for p in people + filler]
    lines.append(f"C_NUL,Nul\x00Byte,L,nul@example.com,,C,R,{BAD_DAY}T08:00:00Z,x")
    (day / "customers.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (day / "products.csv").write_text("product_id,product_name,category,list_price\n" + "".join(
        f"{_csv_field('P_' + t)},{_csv_field(t)},{_csv_field(t)},1.00\n" for t in values))
    tickets = [_ticket(f"_{i}_{t}", subject=t, channel=t, requester={"email": f"r{i}@example.com", "name": t},
                       customer_ref=f"C_{i}_{t}") for i, t in enumerate(values)]
    tickets += [_ticket(f"_F{i}") for i in range(200)]
    tickets.append(_ticket("_NUL", requester={"email": "n@example.com", "name": "Nul\x00Byte"}))
    tickets.append(_ticket("_SURROGATE", subject="half \ud83e of an emoji"))
    (landing / "service" / f"tickets_{BAD_DAY}.json").write_text(json.dumps({"tickets": tickets}))
    events = [_event(f"_{i}_{t}", visitor_id=f"v_{t}", page=t, referrer=t, utm_source=t, utm_medium=t,
                     utm_campaign=t, **{t[:40]: t}) for i, t in enumerate(values)]
    events += [_event(f"_F{i}") for i in range(200)]
    events.append(_event("_NUL", page="nul\x00"))
    (landing / "web" / f"events_{BAD_DAY}.jsonl").write_text("\n".join(events) + "\n", encoding="utf-8")

    results = {s: ingest.load_source(wh, landing, s, f"hostile:{s}") for s in ingest.SOURCES}
    ledger.gated(wh, [r.batch_id for r in results.values()])
    settings = make_settings(tmp_path / "home", landing, wh.conninfo)
    dbt.run_dbt(wh, ["run", "--select", "stg_sales__customers", "stg_sales__products", "stg_service__tickets",
                     "stg_web__events"], {"as_of_date": AS_OF.isoformat()}, settings=settings)
    return values, people, nul_line, results


def test_unicode_and_sql_looking_text_arrive_verbatim_and_unstorable_text_is_quarantined(wh, hostile):
    values, people, nul_line, results = hostile
    assert results["sales"].rows == {"customers": len(people) + 200, "products": len(values)}
    with wh.connect() as conn:
        # every raw table is still there, and holds the text as sent
        assert conn.execute("select count(*) from information_schema.tables where table_schema = 'raw'"
                            ).fetchone()[0] >= len(RAW_TABLES)
        raw = conn.execute("""select customer_id, first_name, last_name, phone, city, region,
                                     _extra ->> $$'); drop table raw.x; --$$ from raw.sales_customers
                              where customer_id like 'C\\_%%\\_%%' and customer_id not like 'C\\_F%%'""").fetchall()
        assert sorted(raw) == sorted((p["customer_id"], p["first_name"], p["last_name"], p["phone"], p["city"],
                                      p["region"], p["first_name"]) for p in people)
        staged = conn.execute("select customer_id, first_name, last_name, phone_as_given, city, region "
                              "from staging.stg_sales__customers where customer_id not like 'C\\_F%%' "
                              "and customer_id like 'C\\_%%\\_%%'").fetchall()
        assert sorted(staged) == sorted((p["customer_id"], p["first_name"], p["last_name"], p["phone"], p["city"],
                                         p["region"]) for p in people)
        assert sorted(conn.execute("select product_name from staging.stg_sales__products "
                                   "where product_id like 'P\\_%%'").fetchall()) == \
            sorted((v,) for v in values)
        assert sorted(conn.execute("select requester_name from staging.stg_service__tickets "
                                   "where ticket_id not like 'T\\_F%%' and ticket_id like 'T\\_%%'").fetchall()) == \
            sorted((v,) for v in values)
        assert sorted(conn.execute("select page_path from staging.stg_web__events where event_id not like 'e\\_F%%' "
                                   "and event_id like 'e\\_%%'").fetchall()) == sorted((v,) for v in values)
        drift = {r[0] for r in conn.execute("select column_name from audit.schema_drift")}
    assert "'); drop table raw.x; --" in drift and {v[:40] for v in values} <= drift

    # a NUL character (in a CSV field, or \\u0000 in JSON) and a lone UTF-16 surrogate (\\ud83e
    # in JSON) cannot be stored as text: quarantined by line or record, the rest loads
    assert results["sales"].quarantined == {"customers": 1}
    assert results["service"].quarantined == {"tickets": 2}
    assert results["web"].quarantined == {"events": 1}
    assert _quarantined(wh, f"sales/{BAD_DAY}/customers.csv") == [(nul_line, nul_line - 1,
                                                                   "contains a NUL character")]
    n_tickets = 2 * len(UNICODE_NAMES) + len(SQL_STRINGS) + 200
    assert _quarantined(wh, f"service/tickets_{BAD_DAY}.json") == [
        (None, n_tickets + 1, "requester.name: contains a NUL character (\\u0000), which PostgreSQL cannot store"),
        (None, n_tickets + 2, "subject: contains a lone UTF-16 surrogate, which is not a character")]
    n_events = n_tickets + 1
    assert _quarantined(wh, f"web/events_{BAD_DAY}.jsonl") == [
        (n_events, n_events, "page: contains a NUL character (\\u0000), which PostgreSQL cannot store")]


# --------------------------------------------------------------------------- a bad file among good ones

def test_a_bad_file_takes_its_whole_batch_back_out(wh, landing, tmp_path):
    """The files of a batch loaded before a bad one are not left in raw ungated (the next
    run would skip them and no gate would ever see them): within a source, and across the
    sources of one run. Once the file is fixed the next run loads and gates them all."""
    day = landing / "sales" / BAD_DAY
    day.mkdir()
    (day / "customers.csv").write_text("\n".join([CUSTOMERS_HEADER, f"C9,registered,N,M,n@example.com,,B,BE,DE,"
                                                                     f"{BAD_DAY}T08:00:00Z"]) + "\n")
    (day / "orders.csv").write_text("order_id,ordered_at\nO9,2026-03-02T10:00:00Z\n")  # sorts after customers
    before = _snapshot(wh)
    with pytest.raises(ingest.IngestError, match=rf"^sales/{BAD_DAY}/orders.csv: line 1: required column\(s\) "
                                                 r"missing: customer_id, status; the 1 file\(s\) of batch bad:sales "
                                                 "loaded before it were taken back out$"):
        ingest.load_source(wh, landing, "sales", "bad:sales")
    assert _snapshot(wh) == before

    # across sources: run_all loads sales (good now), then service fails: sales is taken out again
    (day / "orders.csv").write_text("\n".join([ORDERS_HEADER, *_orders(2, 90, BAD_DAY)]) + "\n")
    (landing / "service" / f"tickets_{BAD_DAY}.json").write_text('{"tickets": [')
    from crm360 import pipeline

    settings = make_settings(tmp_path / "home", landing, wh.conninfo)
    with pytest.raises(ingest.IngestError, match=rf"^service/tickets_{BAD_DAY}.json: line 1: invalid JSON"):
        pipeline.run_all(AS_OF, "day3", wh, landing=landing, settings=settings)
    assert _snapshot(wh) == before
    (landing / "service" / f"tickets_{BAD_DAY}.json").write_text(json.dumps({"tickets": [_ticket(9)]}))
    assert pipeline.ingest_all(wh, "day3b", landing, settings, AS_OF) == ["day3b.1:sales", "day3b.1:service",
                                                                         "day3b.1:web"]
    assert [e[3] for e in _of(_snapshot(wh), BAD_DAY)["ledger"]] == ["day3b.1:sales", "day3b.1:sales",
                                                                     "day3b.1:service"]


# --------------------------------------------------------------------------- what the readers choke on

def test_a_one_line_file_bigger_than_a_csv_field_fails_in_one_line(wh, landing, tmp_path, monkeypatch, capsys):
    """A 10 MB single-line orders.csv raised the csv module's 'field larger than field limit' with a
    traceback, and the files of its batch committed before it stayed loaded without a gate. Now it
    fails its file in one line (and the customers file loaded before it is taken back out)."""
    day = landing / "sales" / BAD_DAY
    day.mkdir()
    (day / "customers.csv").write_text("\n".join([CUSTOMERS_HEADER, f"C9,registered,N,M,n@example.com,,B,BE,DE,"
                                                                     f"{BAD_DAY}T08:00:00Z"]) + "\n")
    (day / "orders.csv").write_bytes(b"order_id,x" + b"y" * (10 << 20))  # no line end: one 10 MB header field
    rel = f"sales/{BAD_DAY}/orders.csv"
    message = _refused(wh, landing, "sales", rf"^{rel}: line 1: required column\(s\) missing")
    assert message.endswith("; the 1 file(s) of batch bad:sales loaded before it were taken back out")
    error = _cli_error(wh, landing, tmp_path, monkeypatch, capsys)
    assert error.startswith(f"{rel}: line 1: required column(s) missing")


def test_records_nested_too_deep_are_quarantined_or_refuse_their_document(wh, landing):
    """100,000 nested arrays: PostgreSQL's parser stops at its stack depth (a statement too complex, which
    no retry mends), Python's at its recursion limit. A JSON-lines record that deep is quarantined, the rest
    of its file loads; a JSON document that deep fails its file in one line."""
    deep = "[" * 100_000 + "]" * 100_000
    events = landing / "web" / f"events_{BAD_DAY}.jsonl"
    events.write_text("\n".join([_event(90), '{"event_id": "deep", "visitor_id": "v", "occurred_at": "'
                                 f'{BAD_DAY}T10:00:00Z", "payload": {deep}}}', *(_event(i) for i in range(91, 300))])
                      + "\n")
    result = ingest.load_source(wh, landing, "web", "deep:web")
    assert result.rows == {"events": 210}
    assert _quarantined(wh, f"web/events_{BAD_DAY}.jsonl") == [(2, 2, "a record nested too deeply to be read")]
    tickets = landing / "service" / f"tickets_{BAD_DAY}.json"
    tickets.write_text('{"tickets": [' + deep + "]}")
    _refused(wh, landing, "service", rf"^service/tickets_{BAD_DAY}.json: the JSON document is nested too deeply")


# --------------------------------------------------------------------------- values the build cannot take

def test_values_the_staging_casts_cannot_take_are_quarantined_with_their_line(wh, landing, tmp_path):
    """A refund of 1e30 passed the loader and the raw gate, then dbt failed with 'numeric field overflow
    in stg_sales__orders', naming no file or line, and blocked every later publication; NaN reached the
    marts gate. The contract's types are now the staging casts' own, with NaN refused and a line's
    amount bounded: each such record is quarantined with its line, and staging builds."""
    day = landing / "sales" / BAD_DAY
    day.mkdir()
    (day / "orders.csv").write_text("\n".join([
        ORDERS_HEADER + ",refund_amount",
        f"O70,C1,{BAD_DAY}T10:00:00Z,partially_returned,EUR,1e30",
        f"O71,C1,{BAD_DAY}T10:00:00Z,partially_returned,EUR,NaN",
        f"O72,C1,{BAD_DAY}T10:00:00Z,partially_returned,EUR,Infinity",
        f"O73,C1,{BAD_DAY}T10:00:00Z,partially_returned,EUR,12345678901.50",
        f"O74,C1,{BAD_DAY}T10:00:00Z,partially_returned,EUR,9999999999.99",
        *(f"O{i},C1,{BAD_DAY}T10:00:00Z,completed,EUR," for i in range(75, 600))]) + "\n")
    (day / "order_lines.csv").write_text("\n".join([
        "order_id,line_number,product_id,quantity,unit_price",
        "O75,1,P1,2147483648,1.00", "O76,1,P1,1000000,1.00", "O77,1,P1,1,NaN", "O78,1,P1,2,1000000.00",
        "O79,1,P1,999999,999999.99", *(f"O{i},1,P1,1,9.50" for i in range(80, 600))]) + "\n")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("CRM360_MAX_BAD_ROW_FRACTION", "0.05")
    try:
        result = ingest.load_source(wh, landing, "sales", "poison:sales")
    finally:
        monkeypatch.undo()
    assert result.quarantined == {"orders": 4, "order_lines": 4}
    assert [(line, reason) for line, _, reason in _quarantined(wh, f"sales/{BAD_DAY}/orders.csv")] == [
        (2, "refund_amount: not a valid numeric(12,2): 1e30"),
        (3, "refund_amount: not a number (NaN): NaN"),
        (4, "refund_amount: not a valid numeric(12,2): Infinity"),
        (5, "refund_amount: not a valid numeric(12,2): 12345678901.50")]
    assert [(line, reason) for line, _, reason in _quarantined(wh, f"sales/{BAD_DAY}/order_lines.csv")] == [
        (2, "quantity: not a valid integer: 2147483648"),
        (3, "quantity: quantity must be below 1,000,000: 1000000"),
        (4, "unit_price: not a number (NaN): NaN"),
        (5, "unit_price: a unit price must be below 1,000,000 (the line amount is numeric(14, 2)): 1000000.00")]
    ledger.gated(wh, ["poison:sales"])
    settings = make_settings(tmp_path / "home", landing, wh.conninfo)
    dbt.run_dbt(wh, ["run", "--select", "stg_sales__orders", "stg_sales__order_lines"],
                {"as_of_date": AS_OF.isoformat()}, settings=settings)  # the largest values still fit
    with wh.connect() as conn:
        assert conn.execute("select max(refund_amount)::text from staging.stg_sales__orders").fetchone() == \
            ("9999999999.99",)
        assert conn.execute("select max(line_amount)::text from staging.stg_sales__order_lines").fetchone() == \
            ("999998990000.01",)


# --------------------------------------------------------------------------- byte-order marks and NaN in JSON

def test_a_byte_order_mark_starts_a_json_file_without_harm(wh, landing):
    """Editors on Windows write a UTF-8 byte-order mark. A JSON document with one was refused, a JSON-lines
    file with one lost its first event to the quarantine."""
    (landing / "service" / f"tickets_{BAD_DAY}.json").write_bytes(
        b"\xef\xbb\xbf" + json.dumps({"tickets": [_ticket(7)]}).encode())
    (landing / "web" / f"events_{BAD_DAY}.jsonl").write_bytes(
        b"\xef\xbb\xbf" + "\n".join(_event(i) for i in (80, 81)).encode() + b"\n")
    assert ingest.load_source(wh, landing, "service", "bom:service").rows == {"tickets": 1}
    assert ingest.load_source(wh, landing, "web", "bom:web").rows == {"events": 2}
    assert _quarantined(wh, f"web/events_{BAD_DAY}.jsonl") == []
    with wh.connect() as conn:
        assert conn.execute("select count(*) from raw.web_events where record ->> 'event_id' = 'e80'").fetchone() \
            == (1,)


def test_a_nan_in_one_json_record_quarantines_that_record(wh, landing):
    """Python's parser takes NaN, JSON and jsonb do not: one such record refused its whole file."""
    (landing / "web" / f"events_{BAD_DAY}.jsonl").write_text("\n".join(
        [_event(i) for i in range(60, 160)] + ['{"event_id": "nan", "visitor_id": "v", "occurred_at": "'
                                               f'{BAD_DAY}T10:00:00Z", "value": NaN}}']) + "\n")
    (landing / "service" / f"tickets_{BAD_DAY}.json").write_text(
        '{"tickets": [' + ", ".join(json.dumps(_ticket(i)) for i in range(100, 300)) + ', {"id": "T9", '
        '"created_at": "' + BAD_DAY + 'T09:00:00Z", "satisfaction": -Infinity}]}')
    assert ingest.load_source(wh, landing, "web", "nan:web").rows == {"events": 100}
    assert _quarantined(wh, f"web/events_{BAD_DAY}.jsonl") == [(101, 101, "value: NaN is not a JSON number")]
    assert ingest.load_source(wh, landing, "service", "nan:service").rows == {"tickets": 200}
    assert _quarantined(wh, f"service/tickets_{BAD_DAY}.json") == [
        (None, 201, "satisfaction: -Infinity is not a JSON number")]
