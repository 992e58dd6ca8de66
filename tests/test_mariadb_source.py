"""The sales source as a MariaDB database, read incrementally by an updated-at cursor.

Runs against the MariaDB at CRM360_TEST_MYSQL_URL (default: root on 127.0.0.1:3306).
Each test gets its own database there, dropped afterwards. Without a reachable
server the tests are skipped, unless CRM360_REQUIRE_SERVER=1, where they fail.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import sales_db

from crm360 import ingest
from crm360.ingest import IngestError, ledger
from crm360.ingest.mysql import mysql_connection, parse_mysql_url
from crm360.ingest.sql import SqlSource, SqlTable, load_sql_source, render_value

RAW = ("sales_customers", "sales_orders", "sales_order_lines", "sales_products")

HEADERS = {
    "products": "product_id,product_name,category,list_price",
    "customers": "customer_id,first_name,last_name,email,phone,city,country_code,created_at,updated_at",
    "orders": "order_id,customer_id,ordered_at,status,currency,updated_at",
    "order_lines": "order_id,line_number,product_id,quantity,unit_price",
}
DROPS = {
    "2026-10-01": {
        "products": ["P1,Lamp,home,19.90", "P2,Ball,toys,5.5"],
        "customers": [
            "C1,Anna,Schmidt,anna@example.com,+49 30 1,Berlin,DE,2026-10-01T09:00:00+02:00,2026-10-01T09:00:00+02:00",
            # 23:30 UTC on 30 September: its window is the UTC day, not the drop's day
            "C2,Ben,Meyer,ben@example.com,,Paris,FR,2026-10-01T01:30:00+02:00,2026-10-01T01:30:00+02:00",
        ],
        "orders": [
            "O1,C1,2026-10-01T10:00:00+00:00,placed,EUR,2026-10-01T10:00:00+00:00",
            "O2,C2,2026-10-01T12:00:00+02:00,placed,EUR,2026-10-01T12:00:00+02:00",
            "O2,C2,2026-10-01T12:00:00+02:00,placed,EUR,2026-10-01T12:00:00+02:00",  # exact duplicate
            "O9,C1,2026-13-45T00:00:00+00:00,placed,EUR,2026-10-01T11:00:00+00:00",  # bad date
        ],
        "order_lines": ["O1,1,P1,2,19.90", "O1,2,P2,1,5.50", "O2,1,P2,3,5.50",
                        "O2,2,P1,two,19.90"],  # quantity is not a number
    },
    "2026-10-02": {
        "customers": ["C3,Chloe,Novak,chloe@example.com,,Utrecht,NL,2026-10-02T08:00:00+00:00,"
                      "2026-10-02T08:00:00+00:00"],
        "orders": ["O3,C3,2026-10-02T09:00:00+00:00,placed,EUR,2026-10-02T09:00:00+00:00"],
        "order_lines": ["O3,1,P1,1,19.90"],
    },
    "2026-10-03": {
        "customers": [],
        "orders": ["O4,C1,2026-10-03T15:00:00+00:00,placed,EUR,2026-10-03T15:00:00+00:00"],
        "order_lines": ["O4,1,P2,2,5.50", "O4,2,P1,1,19.90"],
    },
    "2026-10-04": {  # the increment: one new customer, one new order, and O1 shipped
        "customers": ["C4,David,Rossi,david@example.com,,Milano,IT,2026-10-04T10:00:00+00:00,"
                      "2026-10-04T10:00:00+00:00"],
        "orders": ["O5,C4,2026-10-04T11:00:00+00:00,placed,EUR,2026-10-04T11:00:00+00:00",
                   "O1,C1,2026-10-01T10:00:00+00:00,shipped,EUR,2026-10-04T08:00:00+00:00"],
        "order_lines": ["O5,1,P1,1,19.90"],
    },
}
FIRST_UNTIL = date(2026, 10, 4)  # loads the drops of 1-3 October
NEXT_UNTIL = date(2026, 10, 5)
# rows the shop database holds after the drops before FIRST_UNTIL (O9 and the bad line refused, O2 once)
FIRST_COUNTS = {"sales_customers": 3, "sales_orders": 4, "sales_order_lines": 6, "sales_products": 2}
# the 4 October drop adds 1 customer, 2 orders (O5 and O1's new version), 1 line
NEXT_COUNTS = {"sales_customers": 4, "sales_orders": 6, "sales_order_lines": 7, "sales_products": 2}


@pytest.fixture
def landing(tmp_path) -> Path:
    root = tmp_path / "landing"
    for day, files in DROPS.items():
        folder = root / "sales" / day
        folder.mkdir(parents=True)
        for table, rows in files.items():
            (folder / f"{table}.csv").write_text("\n".join([HEADERS[table], *rows]) + "\n", encoding="utf-8")
    return root


def _counts(wh) -> dict[str, int]:
    with wh.connect() as conn:
        return {t: conn.execute(f"select count(*) from raw.{t}").fetchone()[0] for t in RAW}  # noqa: S608


def _ledger(wh) -> list[tuple]:
    with wh.connect() as conn:
        return conn.execute("select source, source_file, sha256, row_count, batch_id, loaded_at "
                            "from audit.load_files order by source, source_file").fetchall()


def _load(wh, url: str, batch: str, until: date, **kwargs) -> ingest.LoadResult:
    return load_sql_source(wh, sales_db.sales_source(url), batch, until=until, **kwargs)


def _window(url: str, table: str, day: str) -> str:
    return f"mysql://{parse_mysql_url(url).describe()}/{table}#updated_at={day}"


def test_publish_skips_rows_the_typed_columns_cannot_hold(landing, shop_url):
    counts = sales_db.publish_drops(landing, shop_url, until=FIRST_UNTIL)
    assert counts == {"products": {"applied": 2, "skipped": 0}, "customers": {"applied": 3, "skipped": 0},
                      "orders": {"applied": 5, "skipped": 1}, "order_lines": {"applied": 6, "skipped": 1}}
    with mysql_connection(shop_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT order_id FROM orders ORDER BY order_id")
        assert [r[0] for r in cur.fetchall()] == ["O1", "O2", "O3", "O4"]
        cur.execute("SELECT ordered_at, updated_at FROM orders WHERE order_id = 'O2'")
        assert cur.fetchone() == (datetime(2026, 10, 1, 10), datetime(2026, 10, 1, 10))  # stored in UTC
        cur.execute("SELECT updated_at FROM order_lines WHERE order_id = 'O3'")
        assert cur.fetchone()[0] == datetime(2026, 10, 2, 23, 59, 59, 999999)  # end of the drop's day
        cur.execute("SELECT * FROM orders ORDER BY order_id")
        before = cur.fetchall()
    again = sales_db.publish_drops(landing, shop_url, until=FIRST_UNTIL)
    assert again == counts
    with mysql_connection(shop_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM orders ORDER BY order_id")
        assert cur.fetchall() == before  # re-applying is a no-op


def test_first_load_then_rerun_changes_nothing(db, landing, shop_url):
    sales_db.publish_drops(landing, shop_url, until=FIRST_UNTIL)
    first = _load(db, shop_url, "b1", FIRST_UNTIL)
    assert _counts(db) == FIRST_COUNTS
    assert first.rows == {"customers": 3, "orders": 4, "order_lines": 6, "products": 2}
    assert len(first.files_loaded) == 10 and first.files_skipped == [] and first.drift == []
    assert _window(shop_url, "customers", "2026-09-30") in first.files_loaded
    with db.connect() as conn:
        row = conn.execute("select ordered_at, updated_at, _batch_id, _source_file from raw.sales_orders "
                           "where order_id = 'O2'").fetchone()
        lines = conn.execute("select quantity, unit_price from raw.sales_order_lines where order_id = 'O1' "
                             "order by line_number").fetchall()
        phone = conn.execute("select phone from raw.sales_customers where customer_id = 'C2'").fetchone()[0]
    assert row == ("2026-10-01T10:00:00+00:00", "2026-10-01T10:00:00+00:00", "b1",
                   _window(shop_url, "orders", "2026-10-01"))
    assert lines == [("2", "19.90"), ("1", "5.50")] and phone is None
    counts, ledger = _counts(db), _ledger(db)

    again = _load(db, shop_url, "b2", FIRST_UNTIL)
    assert again.files_loaded == [] and again.rows == {}
    # the newest window of each table and the one before it are read again, and found unchanged
    assert sorted(again.files_skipped) == sorted([
        _window(shop_url, "customers", "2026-10-01"), _window(shop_url, "customers", "2026-10-02"),
        _window(shop_url, "orders", "2026-10-02"), _window(shop_url, "orders", "2026-10-03"),
        _window(shop_url, "order_lines", "2026-10-02"), _window(shop_url, "order_lines", "2026-10-03"),
        _window(shop_url, "products", "2026-10-01")])
    assert _counts(db) == counts and _ledger(db) == ledger


def test_next_day_adds_that_days_rows_and_a_changed_order_is_a_new_version(db, landing, shop_url):
    sales_db.publish_drops(landing, shop_url, until=FIRST_UNTIL)
    _load(db, shop_url, "b1", FIRST_UNTIL)
    sales_db.publish_drops(landing, shop_url, until=NEXT_UNTIL)
    result = _load(db, shop_url, "b2", NEXT_UNTIL)
    assert sorted(result.files_loaded) == sorted(_window(shop_url, t, "2026-10-04")
                                                 for t in ("customers", "orders", "order_lines"))
    assert result.rows == {"customers": 1, "orders": 2, "order_lines": 1}
    assert _counts(db) == NEXT_COUNTS
    with db.connect() as conn:
        versions = conn.execute("select status, _source_file from raw.sales_orders where order_id = 'O1' "
                                "order by updated_at::timestamptz").fetchall()
        newest = conn.execute("""select distinct on (order_id) order_id, status from raw.sales_orders
                                 order by order_id, updated_at::timestamptz desc""").fetchall()
    assert versions == [("placed", _window(shop_url, "orders", "2026-10-01")),
                        ("shipped", _window(shop_url, "orders", "2026-10-04"))]
    assert newest == [("O1", "shipped"), ("O2", "placed"), ("O3", "placed"), ("O4", "placed"), ("O5", "placed")]


def test_late_commit_inside_the_lookback_is_picked_up_once(db, landing, shop_url):
    sales_db.publish_drops(landing, shop_url, until=FIRST_UNTIL)
    _load(db, shop_url, "b1", FIRST_UNTIL)
    with mysql_connection(shop_url) as conn, conn.cursor() as cur:
        # committed after the run although stamped before its end: one inside the lookback, one before it
        cur.executemany("INSERT INTO orders VALUES (%s, 'C1', %s, 'placed', 'EUR', %s)",
                        [("O6", datetime(2026, 10, 3, 23, 59), datetime(2026, 10, 3, 23, 59, 59, 500000)),
                         ("O7", datetime(2026, 10, 1, 9), datetime(2026, 10, 1, 9))])
        conn.commit()
    result = _load(db, shop_url, "b2", FIRST_UNTIL)
    assert result.files_loaded == [_window(shop_url, "orders", "2026-10-03")]
    assert result.rows == {"orders": 2}  # the window is replaced whole: O4 again, and O6
    with db.connect() as conn:
        orders = conn.execute("select order_id, updated_at from raw.sales_orders order by order_id").fetchall()
    assert orders == [("O1", "2026-10-01T10:00:00+00:00"), ("O2", "2026-10-01T10:00:00+00:00"),
                      ("O3", "2026-10-02T09:00:00+00:00"), ("O4", "2026-10-03T15:00:00+00:00"),
                      ("O6", "2026-10-03T23:59:59.500000+00:00")]
    # O7 is older than the lookback: only a longer one reads it
    wider = _load(db, shop_url, "b3", FIRST_UNTIL, lookback_days=2)
    assert wider.files_loaded == [_window(shop_url, "orders", "2026-10-01")] and wider.rows == {"orders": 3}
    assert _counts(db)["sales_orders"] == 6


def test_unloaded_batch_comes_back_on_the_next_run(db, landing, shop_url):
    sales_db.publish_drops(landing, shop_url, until=FIRST_UNTIL)
    _load(db, shop_url, "b1", FIRST_UNTIL)
    sales_db.publish_drops(landing, shop_url, until=NEXT_UNTIL)
    _load(db, shop_url, "b2", NEXT_UNTIL)
    assert _counts(db) == NEXT_COUNTS
    before = _ledger(db)
    removed = ledger.unload(db, ["b2"], "test")
    assert removed == {"sales_customers": 1, "sales_orders": 2, "sales_order_lines": 1}
    assert _counts(db) == FIRST_COUNTS
    assert [r for r in _ledger(db) if r[4] == "b2"] == [] and len(_ledger(db)) == 10
    again = _load(db, shop_url, "b3", NEXT_UNTIL)
    assert len(again.files_loaded) == 3
    assert _counts(db) == NEXT_COUNTS
    assert [r[:4] for r in _ledger(db)] == [r[:4] for r in before]  # same windows, same hashes and counts


def test_a_new_export_column_reaches_raw(db, landing, shop_url):
    sales_db.publish_drops(landing, shop_url, until=FIRST_UNTIL)
    _load(db, shop_url, "b1", FIRST_UNTIL)
    folder = landing / "sales" / "2026-10-04"
    (folder / "orders.csv").write_text(HEADERS["orders"] + ",guest_email\n"
                                       "O5,C4,2026-10-04T11:00:00+00:00,placed,EUR,2026-10-04T11:00:00+00:00,"
                                       "guest@example.com\n", encoding="utf-8")
    sales_db.publish_drops(landing, shop_url, until=NEXT_UNTIL)
    result = _load(db, shop_url, "b2", NEXT_UNTIL)
    assert result.drift == ["sales_orders: guest_email"]
    # a new column changes the hash of every window read again (2 and 3 October): they are reloaded with it
    assert result.rows["orders"] == 3 and _counts(db)["sales_orders"] == 5
    with db.connect() as conn:
        rows = conn.execute("select order_id, _extra ->> 'guest_email' from raw.sales_orders "
                            "where order_id in ('O1', 'O5') order by 1").fetchall()
    assert rows == [("O1", None), ("O5", "guest@example.com")]


def test_column_mapping_and_drift(db, shop_url):
    with mysql_connection(shop_url) as conn, conn.cursor() as cur:
        cur.execute("""CREATE TABLE shop_clients (cust_no VARCHAR(64) NOT NULL PRIMARY KEY, given_name VARCHAR(100),
                       mail VARCHAR(320) NOT NULL, tier VARCHAR(16), changed_at DATETIME(6) NOT NULL,
                       KEY (changed_at))""")
        cur.executemany("INSERT INTO shop_clients VALUES (%s, %s, %s, %s, %s)",
                        [("K-1", "Olga", "olga@example.com", "gold", datetime(2026, 10, 1, 8)),
                         ("K-2", "Paul", "paul@example.com", None, datetime(2026, 10, 2, 9, 30))])
        conn.commit()
    table = SqlTable("customers", "shop_clients", "sales_customers",
                     {"customer_id": "cust_no", "first_name": "given_name", "email": "mail",
                      "loyalty_tier": "tier", "updated_at": "changed_at"}, cursor="changed_at")
    result = load_sql_source(db, SqlSource("crm", shop_url, (table,)), "m1", until=date(2026, 10, 3))
    prefix = f"mysql://{parse_mysql_url(shop_url).describe()}/shop_clients#changed_at="
    assert result.files_loaded == [prefix + "2026-10-01", prefix + "2026-10-02"]
    assert result.drift == ["sales_customers: loyalty_tier"]
    with db.connect() as conn:
        rows = conn.execute("""select customer_id, first_name, last_name, email, _extra ->> 'loyalty_tier',
                                      updated_at from raw.sales_customers order by customer_id""").fetchall()
        drift = conn.execute("select column_name, first_seen_batch from audit.schema_drift").fetchall()
    assert rows == [("K-1", "Olga", None, "olga@example.com", "gold", "2026-10-01T08:00:00+00:00"),
                    ("K-2", "Paul", None, "paul@example.com", None, "2026-10-02T09:30:00+00:00")]
    assert drift == [("loyalty_tier", "m1")]

    broken = SqlTable("customers", "shop_clients", "sales_customers",
                      {"customer_id": "cust_no", "email": "e_mail"}, cursor="changed_at")
    with pytest.raises(IngestError, match=r"e_mail.*shop_clients|shop_clients.*e_mail"):
        load_sql_source(db, SqlSource("crm", shop_url, (broken,)), "m2", until=date(2026, 10, 3))
    assert _counts(db)["sales_customers"] == 2


def test_unreachable_server_is_named_without_the_password(db):
    source = sales_db.sales_source("mysql://shop:s3cret@127.0.0.1:1/shop", discover=False)
    with pytest.raises(IngestError) as info:
        load_sql_source(db, source, "x1", until=date(2026, 10, 4))
    assert "127.0.0.1:1" in str(info.value) and "s3cret" not in str(info.value)


def test_url_and_rendering():
    url = parse_mysql_url("mysql://app%40shop:p%3Ass@db.internal/sales")
    assert (url.user, url.password, url.host, url.port, url.database) == ("app@shop", "p:ss", "db.internal", 3306,
                                                                        "sales")
    assert "p:ss" not in repr(url) and "p:ss" not in str(url)
    with pytest.raises(IngestError, match="one database"):
        parse_mysql_url("mysql://root@127.0.0.1:3306/")
    from decimal import Decimal

    assert render_value(datetime(2026, 10, 1, 14, 3, 11)) == "2026-10-01T14:03:11+00:00"
    assert render_value(Decimal("12.50")) == "12.50" and render_value(7) == "7" and render_value(None) is None


def test_configured_sql_source_loads_what_the_drops_hold(tmp_path, shop_url, embedded_server, fresh_db, monkeypatch):
    """sources.yml with `kind: sql` (the shipped MariaDB example) and the file drops of the
    same generated shop give the same raw business rows; the next day's increment adds
    exactly that day's records and a re-run adds nothing."""
    from conftest import REPO

    from crm360.ingest.sources import load_config
    from crm360.synthetic.generate import GeneratorConfig, generate

    landing = tmp_path / "generated"
    world, _ = generate(landing, GeneratorConfig.preset("tiny", seed=21, progress=False))
    end = world.end_date
    sales_db.publish_drops(landing, shop_url, until=end)
    monkeypatch.setenv("CRM360_SALES_DB_URL", shop_url)
    config = load_config(REPO / "examples" / "sources.mariadb.yml")
    from_db, from_files = fresh_db(embedded_server), fresh_db(embedded_server)

    first = ingest.load_source(from_db, landing, "sales", "db1", until=end, config=config)
    assert first.files_loaded and not first.quarantined
    ingest.load_source(from_files, landing, "sales", "files1", until=end)
    business = {
        "sales_customers": "customer_id, email, created_at::timestamptz, updated_at::timestamptz",
        "sales_orders": "order_id, customer_id, status, ordered_at::timestamptz, updated_at::timestamptz, "
                        "nullif(refund_amount, '')::numeric",
        "sales_order_lines": "order_id, line_number::int, product_id, quantity::int, unit_price::numeric",
        "sales_products": "product_id, list_price::numeric",
    }

    def newest(wh, table, columns):
        key = columns.split(",")[0] if table != "sales_order_lines" else "order_id, line_number::int"
        # both ledger names sort by day: sales/<day>/... and ...#updated_at=<day>
        latest = "updated_at::timestamptz desc" if "updated_at" in columns else "_source_file desc"
        with wh.connect() as conn:
            return conn.execute(f"select distinct on ({key}) {columns} from raw.{table} "  # noqa: S608
                                f"order by {key}, {latest}").fetchall()

    for table, columns in business.items():
        assert newest(from_db, table, columns) == newest(from_files, table, columns), table

    counts = _counts(from_db)
    sales_db.publish_drops(landing, shop_url)  # the next day arrives in the shop database
    ingest.load_source(from_db, landing, "sales", "db2", until=end + timedelta(days=1), config=config)
    grown = _counts(from_db)
    again = ingest.load_source(from_db, landing, "sales", "db3", until=end + timedelta(days=1), config=config)
    assert again.files_loaded == [] and _counts(from_db) == grown
    day = landing / "sales" / end.isoformat()
    import csv
    new_orders = {r["order_id"] for r in csv.DictReader(open(day / "orders.csv", encoding="utf-8"))}
    assert grown["sales_orders"] - counts["sales_orders"] >= len(new_orders) > 0
