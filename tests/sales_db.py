"""The shop's OLTP database in MariaDB, fed from the sales drops.

The real sales system is a live database, not a folder of CSV files. To read it
the way production would (incrementally, by an updated-at cursor, see
:mod:`crm360.ingest.sql`) and still compare with the file path, ``publish_drops``
replays the daily drops ``sales/<YYYY-MM-DD>/{products,customers,orders,order_lines}.csv``
into MariaDB in date order, so the database and the files hold the same
business data. Each row is upserted: the next day's drop (new and changed
records) is an incremental update, and re-applying a drop changes nothing.

Typed columns, as a shop database would have them: DATETIME(6) holding UTC,
DECIMAL for money, INT for quantities, VARCHAR for ids and text, utf8mb4 with
a binary no-pad collation (ids compare exactly, ``'C1 '`` is not ``'C1'``).
A row such columns cannot hold (a date that is not one, a quantity that is
not a number, a missing key) is skipped and counted: a real shop database
would have refused it. The raw gate, not this module, judges rows that fit.

Columns come from the file header: a column the table lacks is added as TEXT,
a column the table has but an older file lacks is left alone. Types are read
from the database, so a column a DBA retypes is validated as retyped.

``updated_at`` is the extraction cursor and is NOT NULL and indexed on every
table. Customers and orders bring their own. Products and order lines are
exported without one, so such a row gets the end of its drop's day
(23:59:59.999999 UTC): the drop of day D is what changed during D, known at the
latest when D ends, so the row falls into window D like the file does, and a
line is never older than its order. It moves on only when a value changes
(as ``ON UPDATE CURRENT_TIMESTAMP`` would), so re-sending a row unchanged does
not make it new. An incoming row older than the stored one is ignored, so
replaying old drops after newer ones cannot roll a row back. An empty
``updated_at`` in an export gets the same end-of-day value.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path

import pymysql

from crm360.ingest import IngestError
from crm360.ingest.mysql import MysqlUrl, mysql_connection, parse_mysql_url, quote_mysql
from crm360.ingest.sources import CONTRACT
from crm360.ingest.sql import SqlSource, SqlTable

log = logging.getLogger(__name__)

CURSOR = "updated_at"
TABLE_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin"
BATCH_ROWS = 1_000  # rows per multi-row INSERT
LOGGED_BAD_ROWS = 5  # per file; the rest are only counted
_COLUMN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True)
class ShopTable:
    """A table of the shop database and the CSV export of the same name."""

    name: str
    columns: tuple[tuple[str, str], ...]  # (name, MariaDB type) of the exported columns, in export order
    key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()

    @property
    def export_columns(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @property
    def exports_cursor(self) -> bool:
        return CURSOR in self.export_columns

    def ddl(self) -> str:
        cols = [f"{quote_mysql(name)} {kind}" for name, kind in self.columns]
        if not self.exports_cursor:
            cols.append(f"{quote_mysql(CURSOR)} DATETIME(6) NOT NULL")
        cols.append(f"PRIMARY KEY ({', '.join(quote_mysql(c) for c in self.key)})")
        for index in ((CURSOR,), *self.indexes):
            cols.append(f"KEY {quote_mysql(self.name + '_' + '_'.join(index))} "
                        f"({', '.join(quote_mysql(c) for c in index)})")
        body = ",\n  ".join(cols)
        return f"CREATE TABLE IF NOT EXISTS {quote_mysql(self.name)} (\n  {body}\n) {TABLE_OPTIONS}"


_ID = "VARCHAR(64)"
_MONEY = "DECIMAL(12,2)"
_MOMENT = "DATETIME(6)"

# in the order a day is applied: what rows refer to comes first
SHOP_TABLES: tuple[ShopTable, ...] = (
    ShopTable("products", (
        ("product_id", f"{_ID} NOT NULL"), ("product_name", "VARCHAR(255)"), ("category", "VARCHAR(64)"),
        ("list_price", f"{_MONEY} NOT NULL"),
    ), key=("product_id",)),
    ShopTable("customers", (
        ("customer_id", f"{_ID} NOT NULL"), ("first_name", "VARCHAR(255)"), ("last_name", "VARCHAR(255)"),
        ("email", "VARCHAR(320) NOT NULL"), ("phone", "VARCHAR(64)"), ("city", "VARCHAR(255)"),
        ("country_code", "VARCHAR(8)"), ("created_at", f"{_MOMENT} NOT NULL"), (CURSOR, f"{_MOMENT} NOT NULL"),
    ), key=("customer_id",), indexes=(("email",),)),
    ShopTable("orders", (
        ("order_id", f"{_ID} NOT NULL"), ("customer_id", f"{_ID} NOT NULL"), ("ordered_at", f"{_MOMENT} NOT NULL"),
        ("status", "VARCHAR(32) NOT NULL"), ("currency", "VARCHAR(8)"), (CURSOR, f"{_MOMENT} NOT NULL"),
    ), key=("order_id",), indexes=(("customer_id",),)),
    ShopTable("order_lines", (
        ("order_id", f"{_ID} NOT NULL"), ("line_number", "INT NOT NULL"), ("product_id", f"{_ID} NOT NULL"),
        ("quantity", "INT NOT NULL"), ("unit_price", f"{_MONEY} NOT NULL"),
    ), key=("order_id", "line_number")),
)

# raw tables the sales drops load into (crm360.ingest), which the database source feeds too
RAW_TABLES = {table.name: table.table for table in CONTRACT["sales"]}


# --- databases ---------------------------------------------------------------------------------------------


def ensure_database(url: str | MysqlUrl) -> None:
    """Create the database named in ``url`` if it does not exist (checked first: creating needs a privilege
    that a user of an existing database may lack)."""
    target = parse_mysql_url(url)
    with mysql_connection(target, use_database=False) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (target.database,))
        if cur.fetchone() is None:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_mysql(target.database)} "
                        "CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin")


def drop_database(url: str | MysqlUrl) -> None:
    """Drop the database named in ``url`` (tests clean up with it)."""
    target = parse_mysql_url(url)
    with mysql_connection(target, use_database=False) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {quote_mysql(target.database)}")


def create_tables(conn: pymysql.connections.Connection) -> None:
    """The shop tables, if missing; existing ones are left as they are (they may have gained columns)."""
    with conn.cursor() as cur:
        for table in SHOP_TABLES:
            cur.execute(table.ddl())


def sales_source(url: str, name: str = "sales", discover: bool = True) -> SqlSource:
    """The shop database as a :class:`SqlSource` loading the same raw tables as the sales drops.

    The mapping is the export columns, so raw rows look like the file path's
    (the end-of-day ``updated_at`` of products and lines is not loaded: it is
    not business data). With ``discover`` (a look at the database's columns),
    columns the shop tables gained from newer drop headers are loaded as well,
    under their own names, as the file path would load them; without it the
    configuration needs no connection.
    """
    mappings = {t.name: {c: c for c in t.export_columns} for t in SHOP_TABLES}
    if discover:
        with mysql_connection(url) as conn:
            for table in SHOP_TABLES:
                known = {*table.export_columns, CURSOR}
                for column in _table_columns(conn, table.name):
                    if column.name not in known:
                        mappings[table.name][column.name] = column.name
    return SqlSource(name, url, tuple(SqlTable(t.name, t.name, RAW_TABLES[t.name], mappings[t.name])
                                      for t in SHOP_TABLES))


# --- typed values ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    name: str
    required: bool  # NOT NULL without a default: a row must bring a value
    parse: Callable[[str], object]  # text from the export -> value the column holds; ValueError if it cannot


_INT_BITS = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "integer": 32, "bigint": 64}
_TEXT_BYTES = {"tinytext": 255, "text": 65_535, "mediumtext": 16_777_215, "longtext": 4_294_967_295}
_INTEGER = re.compile(r"^[+-]?\d+$")


def _parse_moment(text: str, low: datetime, high: datetime) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO 8601 date-time: {text!r}") from None
    # an offset is converted; a time without one is taken as UTC (the column holds UTC)
    moment = moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
    if not low <= moment <= high:
        raise ValueError(f"{text!r} is outside the column's range")
    return moment


def _parser(data_type: str, column_type: str, char_length: int | None, precision: int | None,
            scale: int | None) -> Callable[[str], object]:
    """How a column of this MariaDB type checks and converts an exported text value."""
    if data_type in _INT_BITS:
        bits, unsigned = _INT_BITS[data_type], "unsigned" in column_type
        low, high = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)

        def parse_int(text: str) -> int:
            if not _INTEGER.match(text.strip()):
                raise ValueError(f"not an integer: {text!r}")
            value = int(text)
            if not low <= value <= high:
                raise ValueError(f"{text} is out of range for {column_type}")
            return value
        return parse_int
    if data_type in ("decimal", "numeric"):
        digits, places = precision or 10, scale or 0
        step, limit = Decimal(1).scaleb(-places), Decimal(10) ** (digits - places)

        def parse_decimal(text: str) -> Decimal:
            try:
                value = Decimal(text.strip())
            except InvalidOperation:
                raise ValueError(f"not a number: {text!r}") from None
            if not value.is_finite():
                raise ValueError(f"not a finite number: {text!r}")
            value = value.quantize(step, rounding=ROUND_HALF_UP)  # as MariaDB rounds a longer fraction
            if abs(value) >= limit:
                raise ValueError(f"{text} does not fit {column_type}")
            return value
        return parse_decimal
    if data_type in ("float", "double"):
        def parse_float(text: str) -> float:
            value = float(text)  # ValueError names the text
            if not math.isfinite(value):
                raise ValueError(f"not a finite number: {text!r}")
            return value
        return parse_float
    if data_type == "datetime":
        return lambda text: _parse_moment(text.strip(), datetime(1000, 1, 1), datetime.max)
    if data_type == "timestamp":
        return lambda text: _parse_moment(text.strip(), datetime(1970, 1, 1, 0, 0, 1),
                                          datetime(2038, 1, 19, 3, 14, 7))
    if data_type == "date":
        return lambda text: date.fromisoformat(text.strip())
    if data_type in ("char", "varchar"):
        def parse_chars(text: str) -> str:
            if char_length is not None and len(text) > char_length:
                raise ValueError(f"{len(text)} characters, {column_type} holds {char_length}")
            return text
        return parse_chars
    if data_type in _TEXT_BYTES:
        def parse_text(text: str) -> str:
            if len(text.encode()) > _TEXT_BYTES[data_type]:
                raise ValueError(f"too long for {column_type}")
            return text
        return parse_text
    return lambda text: text  # other types: the database decides


def _table_columns(conn: pymysql.connections.Connection, table: str) -> list[_Column]:
    with conn.cursor() as cur:
        cur.execute("""SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT,
                              CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE
                       FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s
                       ORDER BY ORDINAL_POSITION""", (table,))
        rows = cur.fetchall()
    return [_Column(name, nullable == "NO" and default is None,
                    _parser(data_type.lower(), column_type.lower(), length, precision, scale))
            for name, data_type, column_type, nullable, default, length, precision, scale in rows]


# --- publishing --------------------------------------------------------------------------------------------


def _day_folders(sales: Path, until: date | None) -> Iterator[tuple[date, Path]]:
    days = []
    for folder in sales.iterdir() if sales.is_dir() else ():
        try:
            day = date.fromisoformat(folder.name)
        except ValueError:
            continue
        if folder.is_dir() and (until is None or day < until):
            days.append((day, folder))
    yield from sorted(days)


def _read_header(path: Path, rel: str) -> list[str]:
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        header = [h.strip() for h in next(csv.reader(fh), [])]
    if not header or any(not _COLUMN_NAME.match(h) for h in header) or len(set(header)) != len(header):
        raise IngestError(f"{rel}: line 1: expected a CSV header of unique column names (letters, digits, '_', "
                          f"starting with a letter), got {header!r}")
    return header


def _add_columns(conn: pymysql.connections.Connection, table: ShopTable, header: list[str],
                 known: list[_Column]) -> bool:
    """Columns of a newer export the table lacks are added as TEXT (DDL: before the day's transaction)."""
    existing = {c.name.lower() for c in known}
    added = [h for h in header if h.lower() not in existing]
    with conn.cursor() as cur:
        for column in added:
            cur.execute(f"ALTER TABLE {quote_mysql(table.name)} ADD COLUMN {quote_mysql(column)} TEXT NULL")
    if added:
        log.warning("shop table %s: new column(s) from the export: %s", table.name, ", ".join(added))
    return bool(added)


def _upsert_statement(table: ShopTable, columns: list[str], derived_cursor: bool) -> str:
    """INSERT ... ON DUPLICATE KEY UPDATE where a stored row changes only for a version at least as new.

    MariaDB applies the assignments left to right and later ones see earlier
    results, so ``updated_at`` is decided first and the other columns follow
    it: they take the incoming values exactly when ``updated_at`` now equals
    the incoming one.
    """
    cursor = quote_mysql(CURSOR)
    data = [quote_mysql(c) for c in columns if c not in table.key and c != CURSOR]
    newer = f"VALUES({cursor}) >= {cursor}"
    if derived_cursor:  # the drop day is the version: move on only if a value differs
        unchanged = " AND ".join(f"{c} <=> VALUES({c})" for c in data) or "TRUE"
        newer += f" AND NOT ({unchanged})"
    assignments = [f"{cursor} = IF({newer}, VALUES({cursor}), {cursor})"]
    assignments += [f"{c} = IF({cursor} = VALUES({cursor}), VALUES({c}), {c})" for c in data]
    return (f"INSERT INTO {quote_mysql(table.name)} ({', '.join(quote_mysql(c) for c in columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))}) ON DUPLICATE KEY UPDATE {', '.join(assignments)}")


def _apply_file(conn: pymysql.connections.Connection, table: ShopTable, path: Path, rel: str, day: date,
                columns: list[_Column], counts: dict[str, int]) -> None:
    by_name = {c.name.lower(): c for c in columns}
    header = _read_header(path, rel)
    targets = [by_name[h.lower()] for h in header]
    present = {c.name for c in targets}
    missing = [c.name for c in columns if c.required and c.name not in present and c.name != CURSOR]
    if missing:
        raise IngestError(f"{rel}: line 1: column(s) {', '.join(missing)} missing; the shop table "
                          f"{table.name} requires them")
    derived_cursor = CURSOR not in present
    names = [c.name for c in targets] + ([CURSOR] if derived_cursor else [])
    cursor_at = names.index(CURSOR)
    end_of_day = datetime.combine(day, time.max)
    statement = _upsert_statement(table, names, derived_cursor)
    batch: list[list[object]] = []
    bad = 0
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh, conn.cursor() as cur:
        reader = csv.reader(fh)
        next(reader)
        for fields in reader:
            if not fields:
                continue
            problem, values = _typed_row(fields, targets)
            if problem is not None:
                bad += 1
                if bad <= LOGGED_BAD_ROWS:
                    log.warning("%s: line %d: %s; row skipped", rel, reader.line_num, problem)
                continue
            if derived_cursor:
                values.append(end_of_day)
            elif values[cursor_at] is None:
                values[cursor_at] = end_of_day
            batch.append(values)
            if len(batch) >= BATCH_ROWS:
                cur.executemany(statement, batch)
                counts["applied"] += len(batch)
                batch.clear()
        if batch:
            cur.executemany(statement, batch)
            counts["applied"] += len(batch)
    if bad:
        log.warning("%s: %d row(s) the shop table %s cannot hold were skipped", rel, bad, table.name)
        counts["skipped"] += bad


def _typed_row(fields: list[str], targets: list[_Column]) -> tuple[str | None, list[object]]:
    """(problem, values): the values the typed columns would store, or why they cannot."""
    if len(fields) != len(targets):
        return f"expected {len(targets)} fields, found {len(fields)}", []
    values: list[object] = []
    for column, text in zip(targets, fields, strict=True):
        if any("\udc80" <= ch <= "\udcff" for ch in text):
            return f"{column.name}: not valid UTF-8", []
        if text.strip() == "":  # as COPY reads an unquoted empty CSV field: NULL
            if column.required and column.name != CURSOR:
                return f"{column.name}: missing value", []
            values.append(None)
            continue
        try:
            values.append(column.parse(text))
        except ValueError as exc:
            return f"{column.name}: {exc}", []
    return None, values


def publish_drops(landing: Path, url: str, until: date | None = None) -> dict:
    """Apply the sales drops under ``landing`` (days before ``until``, if given) to the shop database.

    One transaction per day, so a day is either in the database or not.
    Returns ``{table: {"applied": rows upserted, "skipped": rows refused}}``.
    """
    landing = Path(landing)
    target = parse_mysql_url(url)
    ensure_database(target)
    counts = {t.name: {"applied": 0, "skipped": 0} for t in SHOP_TABLES}
    days = 0
    with mysql_connection(target) as conn:
        create_tables(conn)
        columns = {t.name: _table_columns(conn, t.name) for t in SHOP_TABLES}
        for day, folder in _day_folders(landing / "sales", until):
            files = [(t, folder / f"{t.name}.csv") for t in SHOP_TABLES if (folder / f"{t.name}.csv").is_file()]
            for table, path in files:
                rel = path.relative_to(landing).as_posix()
                if _add_columns(conn, table, _read_header(path, rel), columns[table.name]):
                    columns[table.name] = _table_columns(conn, table.name)
            try:
                for table, path in files:
                    _apply_file(conn, table, path, path.relative_to(landing).as_posix(), day,
                                columns[table.name], counts[table.name])
                conn.commit()
            except pymysql.err.MySQLError as exc:
                conn.rollback()
                raise IngestError(f"sales/{day.isoformat()}: the shop database at {target.describe()} refused the "
                                  f"day ({exc.args[1] if len(exc.args) > 1 else exc}); nothing of it was applied"
                                  ) from None
            except BaseException:
                conn.rollback()
                raise
            days += 1
    log.info("published %d day(s) of sales drops to %s: %s", days, target.describe(), counts)
    return counts
