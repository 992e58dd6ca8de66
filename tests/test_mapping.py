"""The mapping says what an export needs, without code: constants and defaults, row positions for
keys it lacks, its date formats and time zone, decimal commas and thousands separators. A value
that does not fit its stated format is quarantined with the column, the value and the format."""

import textwrap

import pytest

from crm360 import ingest
from crm360.ingest.sources import SourceConfigError, load_config

# the till's orders are in dollars: the deployment reports in them (a load reads the currency from
# the sources.yml the settings name, so the fixture below points them at this file)
SALES = """currency: {reporting: USD}
sources:
  sales:
    location: till
    tables:
      products:    {pattern: "*/products.csv"}
      customers:   %s
      orders:      %s
      order_lines: %s
"""
PLAIN = '{pattern: "*/none.csv"}'


def _config(tmp_path, customers=PLAIN, orders=PLAIN, order_lines=PLAIN):
    path = tmp_path / "sources.yml"
    path.write_text(SALES % tuple(textwrap.dedent(t).strip().replace("\n", " ")
                                  for t in (customers, orders, order_lines)))
    return load_config(path)


def _drop(tmp_path, name, text):
    day = tmp_path / "till" / "2026-03-02"
    day.mkdir(parents=True, exist_ok=True)
    (day / name).write_text(textwrap.dedent(text).lstrip())


@pytest.fixture(autouse=True)
def _tolerant(monkeypatch, tmp_path):
    """Small files with one bad record each: let the batch keep the good ones. The settings read
    the sources.yml ``_config`` writes."""
    monkeypatch.setenv("CRM360_MAX_BAD_ROW_FRACTION", "0.5")
    monkeypatch.setenv("CRM360_SOURCES", str(tmp_path / "sources.yml"))


def _rows(db, sql):
    with db.connect() as conn:
        return conn.execute(sql).fetchall()


def test_a_till_export_gets_constants_compact_dates_in_its_time_zone(db, tmp_path):
    config = _config(tmp_path, orders="""{pattern: "*/sales.csv",
        columns: {order_id: Invoice, customer_id: CustomerNo, ordered_at: Day},
        constants: {status: completed, currency: USD},
        defaults: {channel: store},
        dates: {ordered_at: "%Y%m%d"}, timezone: America/New_York}""")
    _drop(tmp_path, "sales.csv", """\
        Invoice,CustomerNo,Day,channel
        I-1,C-7,20260301,
        I-2,C-8,20260115,web
        I-3,C-9,2026-03-01,
        """)
    result = ingest.load_source(db, tmp_path, "sales", "b1", config=config)
    assert result.rows == {"orders": 2} and result.quarantined == {"orders": 1}
    assert _rows(db, "select order_id, customer_id, ordered_at, status, currency, channel from raw.sales_orders "
                     "order by order_id") == [
        ("I-1", "C-7", "2026-03-01T00:00:00-05:00", "completed", "USD", "store"),
        ("I-2", "C-8", "2026-01-15T00:00:00-05:00", "completed", "USD", "web")]
    assert _rows(db, "select line_number, reason from raw._quarantine") == [
        (4, "ordered_at: '2026-03-01' does not match the date format %Y%m%d")]


def test_an_erp_export_with_decimal_commas_day_first_dates_and_row_numbers(db, tmp_path):
    config = _config(
        tmp_path,
        customers="""{pattern: "*/debtors.csv", delimiter: ";", columns: {created_at: Angelegt},
            row_id: customer_id, dates: {created_at: "%d.%m.%Y %H:%M"}, timezone: Europe/Berlin}""",
        order_lines="""{pattern: "*/lines.csv", delimiter: ";",
            columns: {order_id: Beleg, product_id: Artikel, quantity: Menge, unit_price: Preis},
            row_number: line_number, defaults: {quantity: 1}, decimal: ",", thousands: "."}""")
    _drop(tmp_path, "debtors.csv", """\
        Name;Angelegt
        Ann;05.03.2026 09:30
        Bea;05.07.2026 23:15
        """)
    _drop(tmp_path, "lines.csv", """\
        Beleg;Artikel;Menge;Preis
        B-1;P-1;2;"1.234,50"
        B-1;P-2;;"0,99"
        B-2;P-1;1;12.5
        """)
    result = ingest.load_source(db, tmp_path, "sales", "b1", config=config)
    assert result.rows == {"customers": 2, "order_lines": 2} and result.quarantined == {"order_lines": 1}
    # the row's place in its file names a customer the export gave no number
    assert _rows(db, "select customer_id, created_at, _extra ->> 'Name' from raw.sales_customers order by 1") == [
        ("sales/2026-03-02/debtors.csv:1", "2026-03-05T09:30:00+01:00", "Ann"),
        ("sales/2026-03-02/debtors.csv:2", "2026-07-05T23:15:00+02:00", "Bea")]
    assert _rows(db, "select order_id, line_number, product_id, quantity, unit_price from raw.sales_order_lines "
                     "order by line_number") == [("B-1", "1", "P-1", "2", "1234.50"), ("B-1", "2", "P-2", "1", "0.99")]
    [(line, reason)] = _rows(db, "select line_number, reason from raw._quarantine")
    assert (line, reason) == (4, "unit_price: '12.5' is not a number with decimal mark ',' and thousands separator '.'")


@pytest.mark.parametrize(("entry", "message"), [
    ('{pattern: a, constants: {status: [1, 2]}}', r"orders.constants.status: a single value"),
    ('{pattern: a, constants: {state: done}}', r"orders.constants.state: not a crm360 column of orders"),
    ('{pattern: a, columns: {status: Status}, constants: {status: completed}}',
     r"orders: status given more than one way"),
    ('{pattern: a, dates: {ordered_at: "%Y%m%d"}}',
     r"orders.timezone: dates of ordered_at carry no offset; say which time zone"),
    ('{pattern: a, dates: {ordered_at: "%Y%m%d"}, timezone: Mars/Olympus}', r"orders.timezone: not a time zone"),
    ('{pattern: a, dates: {status: "%Y%m%d"}, timezone: UTC}', r"orders.dates.status: not a timestamp column"),
    ('{pattern: a, dates: {ordered_at: YYYYMMDD}, timezone: UTC}', r"orders.dates.ordered_at: a strptime format"),
    ('{pattern: a, decimal: ";"}', r"orders.decimal: '.' or ','"),
    ('{pattern: a, decimal: ",", thousands: ","}', r"orders.thousands: .* not the decimal mark"),
    ('{pattern: a, row_number: refund_amount}', r"orders.row_number: refund_amount is a numeric\(12,2\), not a number"),
])
def test_shaping_mistakes_are_named(tmp_path, entry, message):
    with pytest.raises(SourceConfigError, match=r"sources.sales.tables." + message):
        _config(tmp_path, orders=entry)


def test_json_sources_are_not_shaped(tmp_path):
    path = tmp_path / "sources.yml"
    path.write_text("sources:\n  web:\n    tables:\n      events: {pattern: x, constants: {page: /}}\n")
    with pytest.raises(SourceConfigError, match=r"events.constants: only CSV exports can be shaped"):
        load_config(path)


def test_one_purchase_log_feeds_orders_and_order_lines(db, tmp_path):
    """A till's log, one row per purchase, no order id: each row is an order of one line, keyed by
    its place in the file; each table's load of the file is recorded apart."""
    config = _config(
        tmp_path,
        orders="""{pattern: "*/purchases.csv", columns: {customer_id: CustomerNo, ordered_at: Day},
            row_id: order_id, constants: {status: completed, currency: USD},
            dates: {ordered_at: "%Y%m%d"}, timezone: UTC}""",
        order_lines="""{pattern: "*/purchases.csv", columns: {unit_price: Amount},
            row_id: order_id, constants: {line_number: 1, product_id: ALL, quantity: 1}}""")
    _drop(tmp_path, "purchases.csv", """\
        CustomerNo,Day,Amount
        C-1,20260301,19.90
        C-2,20260301,5.00
        C-1,20260302,7.25
        """)
    first = ingest.load_source(db, tmp_path, "sales", "b1", config=config)
    assert first.rows == {"orders": 3, "order_lines": 3}
    assert sorted(first.files_loaded) == ["sales/2026-03-02/purchases.csv#order_lines",
                                          "sales/2026-03-02/purchases.csv#orders"]
    assert _rows(db, "select o.customer_id, o.ordered_at, l.unit_price from raw.sales_orders as o "
                     "join raw.sales_order_lines as l using (order_id) order by o.order_id") == [
        ("C-1", "2026-03-01T00:00:00+00:00", "19.90"), ("C-2", "2026-03-01T00:00:00+00:00", "5.00"),
        ("C-1", "2026-03-02T00:00:00+00:00", "7.25")]
    again = ingest.load_source(db, tmp_path, "sales", "b2", config=config)
    assert again.files_loaded == [] and sorted(again.files_skipped) == sorted(first.files_loaded)


def test_an_excel_workbook_loads_like_a_csv_export(db, tmp_path):
    """A sheet of a workbook: numbers and dates as cells, times placed by the table's time zone, a
    value the contract refuses quarantined with its row."""
    from datetime import datetime

    from openpyxl import Workbook

    config = _config(tmp_path, order_lines="""{pattern: "*/lines.xlsx", format: xlsx, sheet: Lines,
        columns: {order_id: Order, product_id: Item, quantity: Qty, unit_price: Price}, row_number: line_number}""",
        orders="""{pattern: "*/orders.xlsx", format: xlsx, columns: {order_id: Order, customer_id: Customer,
        ordered_at: Placed}, constants: {status: completed}, timezone: Europe/Berlin}""")
    book = Workbook()
    sheet = book.active
    sheet.append(["Order", "Customer", "Placed"])
    sheet.append(["O-1", "C-1", datetime(2026, 3, 1, 10, 30)])
    sheet.append([None, None, None])  # an empty row, skipped
    sheet.append(["O-2", 42, datetime(2026, 7, 1, 8, 0)])
    day = tmp_path / "till" / "2026-03-02"
    day.mkdir(parents=True)
    book.save(day / "orders.xlsx")
    book = Workbook()
    book.active.title = "Notes"
    lines = book.create_sheet("Lines")
    lines.append(["Order", "Item", "Qty", "Price"])
    lines.append(["O-1", "P-1", 2, 19.9])
    lines.append(["O-1", "P-2", 1, 5.0])
    lines.append(["O-2", "P-1", -3, 19.9])
    book.save(day / "lines.xlsx")

    result = ingest.load_source(db, tmp_path, "sales", "b1", config=config)
    assert result.rows == {"orders": 2, "order_lines": 2} and result.quarantined == {"order_lines": 1}
    assert _rows(db, "select order_id, customer_id, ordered_at, status from raw.sales_orders order by 1") == [
        ("O-1", "C-1", "2026-03-01T10:30:00+01:00", "completed"),
        ("O-2", "42", "2026-07-01T08:00:00+02:00", "completed")]
    assert _rows(db, "select order_id, line_number, product_id, quantity, unit_price from raw.sales_order_lines "
                     "order by 2") == [("O-1", "1", "P-1", "2", "19.9"), ("O-1", "2", "P-2", "1", "5")]
    [(line, reason)] = _rows(db, "select line_number, reason from raw._quarantine")
    assert line == 4 and reason.startswith("quantity: quantity must be a positive whole number")
