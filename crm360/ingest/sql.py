"""Incremental extraction from a MySQL/MariaDB source into the ``raw`` schema.

A database table has no files, so the unit of work is a *window*: the rows whose
cursor column (``updated_at`` by default) falls on one UTC day, ``[day, day + 1)``.
A window plays the part a file plays in :mod:`crm360.ingest`. Its id, for example
``mysql://127.0.0.1:3306/shop/orders#updated_at=2026-10-01``, is the
``_source_file`` of its raw rows and its ``source_file`` in ``audit.load_files``,
with the SHA-256 of its rows, so ``crm360.ingest.ledger.unload`` undoes windows
exactly as it undoes files.

Which windows a run reads: from the newest window already in the ledger for the
table minus ``lookback_days`` (on a first run: the day of the smallest cursor
value) through the day before ``until`` (today, UTC, without one). Days without
rows are not recorded.

Why a lookback. ``updated_at`` is set when a statement runs, but the row becomes
visible only when its transaction commits. A transaction that started before
midnight and commits after a run has read that day brings rows *older* than rows
already read. Reading the newest windows again lets the next run pick them up.
The same re-read catches windows that were only partly over (today's, without
``until``). A row whose cursor moves back further than the lookback, and a row
that has no cursor value, is never read. To re-read a longer stretch, pass a
larger ``lookback_days``. The same applies after unloading a batch that was not
the newest.

Why re-running is idempotent. A window is read in primary-key order, each value
rendered as text the way the CSV exports write it (ISO 8601 timestamps in UTC
with ``+00:00``, decimals as plain digits, NULL as NULL). The SHA-256 of those
rows decides: if the ledger holds the same hash for the window, it is skipped.
Re-running an interval re-reads the same windows, finds the same hashes and
changes nothing. A window whose rows differ is replaced whole, in one
PostgreSQL transaction under an advisory lock: delete its rows, COPY the new
ones, upsert its ledger row. A failure leaves the earlier version in place.

What a changed row does. The source keeps one version of a row, and a change
moves its cursor forward, so the new version lands in the window of its new
``updated_at``, loaded as a new row. The old version stays in raw in its old
window unless that window is read again (then it is gone from there, like a
deleted row). Staging keeps the newest version per key. Deletions in the source
are seen only inside re-read windows; there are no tombstones.

A mapped column the contract does not know is kept in the rows' ``_extra`` and
reported as schema drift, like a new column in a CSV header. A mapped column missing in the source fails
the load with the table and column named.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import IO

import psycopg
import pymysql
import pymysql.cursors
from psycopg import sql

from crm360.core.errors import is_retryable
from crm360.core.schema import require_current
from crm360.core.warehouse import Warehouse
from crm360.ingest import ledger
from crm360.ingest.batch import (
    IngestError,
    LoadResult,
    begin_file_load,
    summarize_source_files,
)
from crm360.ingest.mysql import MysqlUrl, mysql_connection, parse_mysql_url, quote_mysql
from crm360.ingest.sources import CONTRACT, CsvTable, SqlSourceBinding

log = logging.getLogger(__name__)

FETCH_ROWS = 5_000  # rows per round trip from the streaming cursor
SPOOL_BYTES = 64 << 20  # a window's rendered rows stay in memory up to this size, then go to a temp file
_RAW_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


# --- configuration -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SqlTable:
    """One source table read into one raw table.

    ``columns`` maps each crm360 (raw) column name to the source column it is
    read from, so a database whose columns are named differently needs only a
    different mapping. ``cursor`` is the *source* column the windows are cut on;
    it is loaded only if it is mapped.
    """

    name: str
    source_table: str
    raw_table: str
    columns: dict[str, str]
    cursor: str = "updated_at"


@dataclass(frozen=True)
class SqlSource:
    """A database source: its name in the ledger, where it is, and what is read from it."""

    name: str
    url: str = field(repr=False)
    tables: tuple[SqlTable, ...]


def window_prefix(url: MysqlUrl, table: SqlTable) -> str:
    """The part of a window id shared by all windows of a table (host, port, database, table, cursor)."""
    return f"mysql://{url.describe()}/{table.source_table}#{table.cursor}="


def window_id(url: MysqlUrl, table: SqlTable, day: date) -> str:
    return f"{window_prefix(url, table)}{day.isoformat()}"


# --- rendering ---------------------------------------------------------------------------------------------


def render_value(value: object) -> str | None:
    """A source value as text, written the way the CSV exports write it."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        # DATETIME columns hold UTC; an aware value (never from PyMySQL, but cheap to honour) is converted
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return moment.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return "\\x" + bytes(value).hex()
    if isinstance(value, timedelta):  # TIME columns
        seconds = int(value.total_seconds())
        sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
        return f"{sign}{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    if isinstance(value, float):
        return repr(value)
    return str(value)


# --- extraction --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """A table resolved against the source: real column names and the order that makes a hash stable."""

    table: SqlTable
    raw_columns: tuple[str, ...]
    select: str  # SELECT ... FROM ... WHERE cursor in [%s, %s) ORDER BY ...
    days_query: str
    min_query: str
    header: bytes  # first line of every window's hash: a remapped column changes every hash
    sample_query: str = ""  # the newest rows by the cursor, LIMIT %s (crm360 sources check)


@dataclass
class _Window:
    day: date
    rows: int
    sha256: str
    spool: IO[bytes]


def _plan(my: pymysql.connections.Connection, url: MysqlUrl, table: SqlTable) -> _Plan:
    for raw_column in table.columns:
        if not _RAW_NAME.match(raw_column) or len(raw_column.encode()) > 63:
            raise IngestError(f"{table.name}: raw column name {raw_column!r} must start with a letter, hold only "
                              "letters, digits and '_', and be at most 63 bytes")
    if not table.columns:
        raise IngestError(f"{table.name}: no columns mapped from {table.source_table}")
    with my.cursor() as cur:
        cur.execute("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                    "AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (table.source_table,))
        actual = {row[0].lower(): row[0] for row in cur.fetchall()}
        cur.execute("SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE() "
                    "AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
                    (table.source_table,))
        key = [row[0] for row in cur.fetchall()]
    if not actual:
        raise IngestError(f"{table.name}: table {table.source_table} not found in {url.describe()}")
    wanted = [*table.columns.values(), table.cursor]
    missing = [c for c in dict.fromkeys(wanted) if c.lower() not in actual]
    if missing:
        raise IngestError(f"{table.name}: column(s) {', '.join(missing)} not found in table {table.source_table} "
                          f"of {url.describe()} (mapped in the source configuration)")
    source_columns = [actual[c.lower()] for c in table.columns.values()]
    cursor = quote_mysql(actual[table.cursor.lower()])
    # without a primary key, ordering by every column read is still deterministic: rows equal in all of
    # them render to the same text, so their order cannot change the hash
    order = ", ".join(quote_mysql(c) for c in (key or [*source_columns, actual[table.cursor.lower()]]))
    from_ = quote_mysql(table.source_table)
    select = (f"SELECT {', '.join(quote_mysql(c) for c in source_columns)} FROM {from_} "
              f"WHERE {cursor} >= %s AND {cursor} < %s ORDER BY {order}")
    days_query = (f"SELECT DISTINCT CAST({cursor} AS DATE) FROM {from_} "
                  f"WHERE {cursor} >= %s AND {cursor} < %s ORDER BY 1")
    header = json.dumps([[raw, src] for raw, src in zip(table.columns, source_columns, strict=True)],
                        ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    sample = (f"SELECT {', '.join(quote_mysql(c) for c in source_columns)} FROM {from_} "
              f"ORDER BY {cursor} DESC LIMIT %s")
    return _Plan(table, tuple(table.columns), select, days_query, f"SELECT MIN({cursor}) FROM {from_}", header,
                 sample)


def _days_to_read(my: pymysql.connections.Connection, plan: _Plan, ledger_days: list[date], last_day: date,
                  lookback_days: int) -> list[date]:
    """The days from the lookback start through ``last_day`` that hold rows; asking the source for them
    saves one query per empty day when a table's history is long and sparse."""
    with my.cursor() as cur:
        if ledger_days:
            first = max(ledger_days) - timedelta(days=lookback_days)
        else:
            cur.execute(plan.min_query)
            smallest = cur.fetchone()[0]
            if smallest is None:
                return []
            first = smallest.date() if isinstance(smallest, datetime) else smallest
        if first > last_day:
            return []
        cur.execute(plan.days_query, (_midnight(first), _midnight(last_day + timedelta(days=1))))
        return [row[0] for row in cur.fetchall() if row[0] is not None]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min)


def _extract(my: pymysql.connections.Connection, plan: _Plan, day: date) -> _Window:
    """Read one window, streaming, into a spool; hash exactly the bytes that will be loaded."""
    digest = hashlib.sha256(plan.header)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+b")
    rows = 0
    try:
        with my.cursor(pymysql.cursors.SSCursor) as cur:
            cur.execute(plan.select, (_midnight(day), _midnight(day + timedelta(days=1))))
            while batch := cur.fetchmany(FETCH_ROWS):
                for row in batch:
                    line = json.dumps([render_value(v) for v in row], ensure_ascii=False,
                                      separators=(",", ":")).encode() + b"\n"
                    digest.update(line)
                    spool.write(line)
                rows += len(batch)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return _Window(day, rows, digest.hexdigest(), spool)


# --- loading -----------------------------------------------------------------------------------------------


def _contract_columns(table: SqlTable) -> tuple[str, ...]:
    for tables in CONTRACT.values():
        for contract in tables:
            if contract.table == table.raw_table and isinstance(contract, CsvTable):
                return contract.columns
    raise IngestError(f"{table.name}: raw.{table.raw_table} is not a raw table of crm360's contract")


def _record_extra_columns(conn: psycopg.Connection, source: SqlSource, plan: _Plan, first_seen: str,
                          batch_id: str) -> list[str]:
    """Mapped columns the contract does not know: kept in the rows' ``_extra``, and reported as schema
    drift the first time they are seen."""
    extra = [c for c in plan.raw_columns if c not in _contract_columns(plan.table)]
    added = []
    for column in extra:
        cur = conn.execute(
            """insert into audit.schema_drift
                   (source, table_name, column_name, change, first_seen_file, first_seen_batch, detected_at)
               values (%s, %s, %s, 'column kept in _extra', %s, %s, now())
               on conflict (table_name, column_name) do nothing""",
            (source.name, plan.table.raw_table, column, first_seen, batch_id))
        if cur.rowcount:
            added.append(column)
    if added:
        log.warning("%s: schema drift, new columns kept in raw.%s._extra: %s", first_seen, plan.table.raw_table,
                    ", ".join(added))
    return added


def copy_rows(conn: psycopg.Connection, plan: _Plan, target: sql.Composable, rows: Iterable[list]) -> None:
    """COPY rendered rows (``render_value``, in ``plan.raw_columns`` order) into ``target``: the
    contract's columns as they are, mapped columns it does not know in ``_extra``."""
    contract = _contract_columns(plan.table)
    known = [i for i, c in enumerate(plan.raw_columns) if c in contract]
    extra = [i for i, c in enumerate(plan.raw_columns) if c not in contract]
    names = [plan.raw_columns[i] for i in known] + (["_extra"] if extra else [])
    stmt = sql.SQL("copy {} ({}) from stdin").format(target, sql.SQL(", ").join(sql.Identifier(c) for c in names))
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for values in rows:
            if not extra:
                copy.write_row(values)
                continue
            kept = {plan.raw_columns[i]: values[i] for i in extra if values[i] is not None}
            copy.write_row([values[i] for i in known] + [json.dumps(kept, ensure_ascii=False) if kept else None])


def sample(source: SqlSource, rows: int) -> Iterator[tuple[SqlTable, _Plan, list[list[str | None]]]]:
    """(table, plan, rows) per table of ``source``: its newest ``rows`` rows by the cursor, rendered as a
    load renders them; never more than that is read (``crm360 sources check``)."""
    url = parse_mysql_url(source.url)
    with mysql_connection(url) as my:
        try:
            for table in source.tables:
                plan = _plan(my, url, table)
                with my.cursor() as cur:
                    cur.execute(plan.sample_query, (rows,))
                    yield table, plan, [[render_value(v) for v in row] for row in cur.fetchall()]
        except pymysql.err.MySQLError as exc:
            raise IngestError(f"{source.name}: reading {url.describe()} failed: "
                              f"{exc.args[1] if len(exc.args) > 1 else exc}") from None


def _load_window(conn: psycopg.Connection, source: SqlSource, plan: _Plan, window: _Window, wid: str,
                 batch_id: str, loaded_at: datetime) -> bool:
    """Replace one window's rows and ledger entry in one transaction (as ingest does for a file);
    returns whether it replaced a version loaded before (kept aside until the batch is gated)."""
    target = sql.Identifier("raw", plan.table.raw_table)
    try:
        with conn.transaction():
            begin_file_load(conn, source.name, wid, batch_id, loaded_at)
            replaced = ledger.hold_replaced(conn, source.name, plan.table.raw_table, wid, batch_id)
            conn.execute(sql.SQL("delete from {} where _source_file = %s").format(target), (wid,))
            copy_rows(conn, plan, target, (json.loads(line) for line in window.spool))
            summarize_source_files(conn, plan.table.raw_table)
            conn.execute(
                """insert into audit.load_files (source, source_file, sha256, row_count, batch_id, loaded_at)
                   values (%s, %s, %s, %s, %s, %s)
                   on conflict (source, source_file) do update set
                       sha256 = excluded.sha256, row_count = excluded.row_count,
                       batch_id = excluded.batch_id, loaded_at = excluded.loaded_at""",
                (source.name, wid, window.sha256, window.rows, batch_id, loaded_at))
    except psycopg.Error as exc:
        if is_retryable(exc):  # the warehouse went away, not the window: a retry loads it
            exc.add_note(f"{wid}: the load was cut off; nothing from the window was committed")
            raise
        raise IngestError(f"{wid}: the warehouse rejected the window ({exc.__class__.__name__}: "
                          f"{str(exc).strip()}); nothing from it was loaded") from exc
    return replaced


def _ledger_days(conn: psycopg.Connection, source: SqlSource, prefix: str) -> dict[date, str]:
    """The windows of one table in the ledger: day -> sha256."""
    rows = conn.execute(
        "select source_file, sha256 from audit.load_files where source = %s and left(source_file, %s) = %s",
        (source.name, len(prefix), prefix)).fetchall()
    days: dict[date, str] = {}
    for source_file, digest in rows:
        try:
            days[date.fromisoformat(source_file[len(prefix):])] = digest
        except ValueError:
            continue  # not a day window: left alone
    return days


def load_sql_source(wh: Warehouse, source: SqlSource, batch_id: str, loaded_at: datetime | None = None,
                    until: date | None = None, lookback_days: int = 1) -> LoadResult:
    """Load the new or changed day windows of every table of ``source`` (windows before ``until``). Safe to re-run.

    All tables are read in one consistent snapshot of the source, so orders and
    their lines agree with each other.
    """
    if lookback_days < 0:
        raise ValueError(f"lookback_days must be 0 or more, got {lookback_days}")
    url = parse_mysql_url(source.url)
    loaded_at = loaded_at or datetime.now(UTC)
    last_day = until - timedelta(days=1) if until is not None else datetime.now(UTC).date()
    require_current(wh)  # the raw tables are the migrations' (crm360 migrate)
    result = LoadResult(source=source.name, batch_id=batch_id)
    with mysql_connection(url) as my, wh.connect(autocommit=True) as conn:
        try:
            with my.cursor() as cur:
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            for table in source.tables:
                _load_table(my, conn, url, source, table, batch_id, loaded_at, last_day, lookback_days, result)
            my.commit()
        except pymysql.err.MySQLError as exc:
            raise IngestError(f"{source.name}: reading {url.describe()} failed: "
                              f"{exc.args[1] if len(exc.args) > 1 else exc}") from None
    log.info("loaded %s from %s: %d windows, %d unchanged, rows %s", source.name, url.describe(),
             len(result.files_loaded), len(result.files_skipped), result.rows)
    return result


def _load_table(my: pymysql.connections.Connection, conn: psycopg.Connection, url: MysqlUrl, source: SqlSource,
                table: SqlTable, batch_id: str, loaded_at: datetime, last_day: date, lookback_days: int,
                result: LoadResult) -> None:
    plan = _plan(my, url, table)
    prefix = window_prefix(url, table)
    added = _record_extra_columns(conn, source, plan, prefix.rstrip("="), batch_id)
    result.drift += [f"{table.raw_table}: {column}" for column in added]
    ledger = _ledger_days(conn, source, prefix)
    for day in _days_to_read(my, plan, list(ledger), last_day, lookback_days):
        window = _extract(my, plan, day)
        with window.spool:
            wid = window_id(url, table, day)
            if window.rows == 0:
                continue
            if ledger.get(day) == window.sha256:
                result.files_skipped.append(wid)
                continue
            if _load_window(conn, source, plan, window, wid, batch_id, loaded_at):
                result.replaced += 1
        result.files_loaded.append(wid)
        result.rows[table.name] = result.rows.get(table.name, 0) + window.rows


def from_binding(binding: SqlSourceBinding) -> SqlSource:
    """The ``kind: sql`` entry of sources.yml as a :class:`SqlSource`.

    Every contract column is read from the source column of the same name unless
    ``columns`` maps it elsewhere. A contract column the source table lacks is
    skipped when it is optional and was not mapped explicitly (shops differ in what
    they keep); a required or explicitly mapped one that is missing fails the load."""
    tables = []
    with mysql_connection(binding.url) as my, my.cursor() as cur:
        for bound in binding.tables:
            cur.execute("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                        "AND TABLE_NAME = %s", (bound.source_table,))
            present = {row[0].lower() for row in cur.fetchall()}
            explicit = {ours for ours, theirs in bound.columns.items() if ours != theirs}
            columns = {ours: theirs for ours, theirs in bound.columns.items()
                       if theirs.lower() in present or ours in explicit or ours in bound.contract.required
                       or not present}
            tables.append(SqlTable(bound.contract.name, bound.source_table, bound.contract.table, columns,
                                   cursor=bound.cursor))
    return SqlSource(binding.name, binding.url, tuple(tables))
