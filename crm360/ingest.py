"""Load source drops into the ``raw`` schema with PostgreSQL COPY.

Every raw row carries ``_batch_id``, ``_source_file`` and ``_loaded_at``. Those
columns default to transaction-local settings, so a CSV is streamed to COPY as it
is, without being parsed in Python.

A file is the unit of work: it is loaded in one transaction that first removes
any earlier rows of the same file, then records the file and its checksum in
``audit.load_files``. Re-running a load therefore never duplicates rows, a file
whose bytes have not changed is skipped, and a failure leaves nothing partial.

Malformed records (broken JSON lines, CSV rows with the wrong number of fields,
bytes that are not UTF-8, records missing a required field) go to
``raw._quarantine`` with file, line and reason. If more than
``CRM360_MAX_BAD_ROW_FRACTION`` (default 1 %) of a file's records are
malformed, the whole file fails and nothing of it is loaded.

Schema drift: a CSV column the loader does not know is added to the raw table
(kept, not dropped) and a JSON field it does not know stays in ``record``; both
are reported in ``audit.schema_drift``. A missing required column fails the file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
from psycopg import sql

from crm360.warehouse import Warehouse

log = logging.getLogger(__name__)

COPY_CHUNK = 1 << 20  # bytes handed to COPY per write


class IngestError(RuntimeError):
    """A source file cannot be loaded; the message names the file, line and reason."""


@dataclass(frozen=True)
class CsvTable:
    """A CSV export loaded column for column into a raw table of text columns."""

    name: str
    pattern: str  # glob under the source folder
    table: str
    columns: tuple[str, ...]
    required: tuple[str, ...]


@dataclass(frozen=True)
class JsonTable:
    """JSON records kept whole as ``record jsonb`` with their position in the file."""

    name: str
    pattern: str
    table: str
    json_lines: bool  # one record per line, else a document holding a list
    list_key: str | None = None
    required: tuple[str, ...] = ()
    known: tuple[str, ...] = ()  # fields staging reads; others are reported as drift


@dataclass(frozen=True)
class Source:
    name: str
    folder: str
    tables: tuple[CsvTable | JsonTable, ...]


SOURCES: dict[str, Source] = {
    "sales": Source("sales", "sales", (
        CsvTable("products", "*/products.csv", "sales_products",
                 ("product_id", "product_name", "category", "list_price"),
                 ("product_id", "list_price")),
        CsvTable("customers", "*/customers.csv", "sales_customers",
                 ("customer_id", "first_name", "last_name", "email", "phone", "city",
                  "country_code", "created_at", "updated_at"),
                 ("customer_id", "email", "created_at")),
        CsvTable("orders", "*/orders.csv", "sales_orders",
                 ("order_id", "customer_id", "ordered_at", "status", "currency", "updated_at"),
                 ("order_id", "customer_id", "ordered_at", "status")),
        CsvTable("order_lines", "*/order_lines.csv", "sales_order_lines",
                 ("order_id", "line_number", "product_id", "quantity", "unit_price"),
                 ("order_id", "line_number", "product_id", "quantity", "unit_price")),
    )),
    "service": Source("service", "service", (
        JsonTable("tickets", "tickets_*.json", "service_tickets", json_lines=False,
                  list_key="tickets", required=("id", "created_at"),
                  known=("id", "type", "status", "created_at", "solved_at", "requester", "customer_ref",
                         "satisfaction", "channel")),
    )),
    "web": Source("web", "web", (
        JsonTable("events", "events_*.jsonl", "web_events", json_lines=True,
                  required=("event_id", "visitor_id", "occurred_at"),
                  known=("event_id", "visitor_id", "event_type", "page", "occurred_at", "email", "customer_id")),
    )),
}

META_COLUMNS = """
    _batch_id text not null default current_setting('crm360.batch_id'),
    _source_file text not null default current_setting('crm360.source_file'),
    _loaded_at timestamptz not null default current_setting('crm360.loaded_at')::timestamptz
"""


def raw_ddl(table: CsvTable | JsonTable) -> sql.Composed:
    if isinstance(table, CsvTable):
        cols = sql.SQL(", ").join(
            sql.SQL("{} text").format(sql.Identifier(c)) for c in table.columns
        )
    else:
        cols = sql.SQL("_record_number integer not null, record jsonb not null")
    return sql.SQL("create table if not exists raw.{} ({}, {})").format(
        sql.Identifier(table.table), cols, sql.SQL(META_COLUMNS)
    )


AUDIT_DDL = """
create table if not exists audit.load_files (
    source text not null,
    source_file text not null,
    sha256 text not null,
    row_count bigint not null,
    batch_id text not null,
    loaded_at timestamptz not null,
    primary key (source, source_file)
)
"""


QUARANTINE_DDL = """
create table if not exists raw._quarantine (
    source text not null,
    table_name text not null,
    source_file text not null,
    line_number bigint,
    record_number bigint,
    reason text not null,
    raw_record text,
    _batch_id text not null,
    _loaded_at timestamptz not null
)
"""

DRIFT_DDL = """
create table if not exists audit.schema_drift (
    source text not null,
    table_name text not null,
    column_name text not null,
    change text not null,
    first_seen_file text not null,
    first_seen_batch text not null,
    detected_at timestamptz not null,
    primary key (table_name, column_name)
)
"""


def max_bad_fraction() -> float:
    value = os.environ.get("CRM360_MAX_BAD_ROW_FRACTION", "0.01")
    try:
        fraction = float(value)
    except ValueError:
        raise IngestError(f"CRM360_MAX_BAD_ROW_FRACTION must be a number between 0 and 1, got {value!r}") from None
    if not 0 <= fraction <= 1:
        raise IngestError(f"CRM360_MAX_BAD_ROW_FRACTION must be between 0 and 1, got {value!r}")
    return fraction


def prepare_raw(wh: Warehouse) -> None:
    """Create raw tables, quarantine, drift log and the load ledger (idempotent)."""
    with wh.connect() as conn:
        conn.execute(AUDIT_DDL)
        conn.execute(QUARANTINE_DDL)
        conn.execute(DRIFT_DDL)
        conn.execute("create index if not exists _quarantine__source_file_idx on raw._quarantine (source_file)")
        for source in SOURCES.values():
            for table in source.tables:
                conn.execute(raw_ddl(table))
                conn.execute(
                    sql.SQL("create index if not exists {} on raw.{} (_source_file)").format(
                        sql.Identifier(f"{table.table}__source_file_idx"), sql.Identifier(table.table)
                    )
                )
        conn.commit()


@dataclass
class LoadResult:
    source: str
    batch_id: str
    files_loaded: list[str] = field(default_factory=list)
    files_skipped: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    drift: list[str] = field(default_factory=list)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def as_dict(self) -> dict:
        return {"source": self.source, "batch_id": self.batch_id,
                "files_loaded": len(self.files_loaded), "files_skipped": len(self.files_skipped),
                "rows": dict(self.rows), "quarantined": dict(self.quarantined), "drift": list(self.drift)}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(COPY_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


DATE_IN_PATH = re.compile(r"(\d{4}-\d{2}-\d{2})")


def file_date(rel: str) -> date | None:
    """The day a drop belongs to, from its path (sales/2026-10-31/orders.csv, events_2026-10-31.jsonl)."""
    match = DATE_IN_PATH.search(rel)
    if not match:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        return None


def discover(landing: Path, source: Source, until: date | None = None) -> Iterator[tuple[CsvTable | JsonTable, Path]]:
    """Every file of ``source`` under ``landing`` in name (that is, date) order; with
    ``until``, only drops dated before it (a run for a data interval ending on
    ``until`` loads the days up to it; later drops wait for their own run)."""
    base = landing / source.folder
    for table in source.tables:
        for path in sorted(base.glob(table.pattern)):
            if not path.is_file():
                continue
            day = file_date(path.relative_to(landing).as_posix())
            if until is not None and day is not None and day >= until:
                continue
            yield table, path


def load_source(wh: Warehouse, landing: Path, source_name: str, batch_id: str,
                loaded_at: datetime | None = None, until: date | None = None) -> LoadResult:
    """Load every new or changed file of one source (dated before ``until``, if given). Safe to re-run."""
    if source_name not in SOURCES:
        raise IngestError(f"unknown source {source_name!r}; known: {', '.join(SOURCES)}")
    source = SOURCES[source_name]
    landing = Path(landing)
    loaded_at = loaded_at or datetime.now(UTC)
    threshold = max_bad_fraction()
    prepare_raw(wh)
    result = LoadResult(source=source_name, batch_id=batch_id)
    with wh.connect() as conn:
        known = dict(conn.execute(
            "select source_file, sha256 from audit.load_files where source = %s", (source_name,)
        ).fetchall())
        conn.commit()
        for table, path in discover(landing, source, until):
            rel = path.relative_to(landing).as_posix()
            digest = sha256_of(path)
            if known.get(rel) == digest:
                result.files_skipped.append(rel)
                continue
            loaded = _load_file(conn, _FileLoad(source_name, table, path, rel, batch_id, loaded_at, threshold),
                                digest)
            result.files_loaded.append(rel)
            result.rows[table.name] = result.rows.get(table.name, 0) + loaded.rows
            if loaded.bad:
                result.quarantined[table.name] = result.quarantined.get(table.name, 0) + len(loaded.bad)
            result.drift += [f"{rel}: {d}" for d in loaded.drift]
    log.info("loaded %s: %d files, %d skipped, rows %s, quarantined %s", source_name,
             len(result.files_loaded), len(result.files_skipped), result.rows, result.quarantined)
    return result


@dataclass(frozen=True)
class _FileLoad:
    source: str
    table: CsvTable | JsonTable
    path: Path
    rel: str
    batch_id: str
    loaded_at: datetime
    max_bad_fraction: float


@dataclass
class _Outcome:
    rows: int = 0
    bad: list[tuple[int | None, int | None, str, str]] = field(default_factory=list)  # line, record, reason, raw
    drift: list[str] = field(default_factory=list)


def _load_file(conn: psycopg.Connection, job: _FileLoad, digest: str) -> _Outcome:
    target = sql.Identifier("raw", job.table.table)
    rel = job.rel
    try:
        with conn.transaction():
            # one loader per file at a time, whatever process it runs in
            conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"{job.source}:{rel}",))
            for key, value in (("batch_id", job.batch_id), ("source_file", rel),
                               ("loaded_at", job.loaded_at.isoformat())):
                conn.execute("select set_config(%s, %s, true)", (f"crm360.{key}", value))
            conn.execute(sql.SQL("delete from {} where _source_file = %s").format(target), (rel,))
            conn.execute("delete from raw._quarantine where source_file = %s", (rel,))
            if isinstance(job.table, CsvTable):
                outcome = _copy_csv(conn, job, target)
            else:
                outcome = _copy_json(conn, job, target)
            _check_threshold(job, outcome)
            if outcome.bad:
                _quarantine(conn, job, outcome.bad)
            if outcome.drift:
                _record_drift(conn, job, outcome.drift)
            conn.execute(
                """insert into audit.load_files
                       (source, source_file, sha256, row_count, batch_id, loaded_at)
                   values (%s, %s, %s, %s, %s, %s)
                   on conflict (source, source_file) do update set
                       sha256 = excluded.sha256, row_count = excluded.row_count,
                       batch_id = excluded.batch_id, loaded_at = excluded.loaded_at""",
                (job.source, rel, digest, outcome.rows, job.batch_id, job.loaded_at),
            )
    except psycopg.Error as exc:
        detail = (exc.diag.context or "").strip().replace("\n", " ") if exc.diag else ""
        raise IngestError(f"{rel}: the database rejected the file ({exc.__class__.__name__}: "
                          f"{str(exc).strip()}{'; ' + detail if detail else ''}); nothing from "
                          "it was loaded") from exc
    return outcome


def _check_threshold(job: _FileLoad, outcome: _Outcome) -> None:
    total = outcome.rows + len(outcome.bad)
    if not outcome.bad:
        return
    if len(outcome.bad) / total > job.max_bad_fraction:
        line, record, reason, _ = outcome.bad[0]
        where = f"line {line}" if line is not None else f"record {record}"
        raise IngestError(
            f"{job.rel}: {where}: {reason}; {len(outcome.bad)} of {total} records malformed "
            f"({len(outcome.bad) / total:.1%}, more than the {job.max_bad_fraction:.1%} allowed by "
            "CRM360_MAX_BAD_ROW_FRACTION); nothing from the file was loaded")
    log.warning("%s: %d malformed record(s) quarantined", job.rel, len(outcome.bad))


def _quarantine(conn: psycopg.Connection, job: _FileLoad, bad: list) -> None:
    stmt = """copy raw._quarantine (source, table_name, source_file, line_number, record_number, reason,
                                    raw_record, _batch_id, _loaded_at) from stdin"""
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for line, record, reason, raw in bad:
            copy.write_row((job.source, job.table.table, job.rel, line, record, reason, raw[:10_000],
                            job.batch_id, job.loaded_at))


def _record_drift(conn: psycopg.Connection, job: _FileLoad, columns: list[str]) -> None:
    change = "column added to raw" if isinstance(job.table, CsvTable) else "field kept in record"
    for column in columns:
        conn.execute(
            """insert into audit.schema_drift
                   (source, table_name, column_name, change, first_seen_file, first_seen_batch, detected_at)
               values (%s, %s, %s, %s, %s, %s, now())
               on conflict (table_name, column_name) do nothing""",
            (job.source, job.table.table, column, change, job.rel, job.batch_id))
    log.warning("%s: schema drift, new %s: %s", job.rel, "columns" if change.startswith("column") else "fields",
                ", ".join(columns))


def _copy_csv(conn: psycopg.Connection, job: _FileLoad, target: sql.Identifier) -> _Outcome:
    table, rel = job.table, job.rel
    with open(job.path, "rb") as fh:
        first = fh.readline()
    try:
        header_line = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise IngestError(f"{rel}: line 1: the header is not valid UTF-8") from None
    if not header_line.strip():
        raise IngestError(f"{rel}: line 1: empty file, expected a CSV header")
    header = [h.strip() for h in next(csv.reader([header_line]))]
    missing = [c for c in table.required if c not in header]
    if missing:
        raise IngestError(f"{rel}: line 1: required column(s) missing: {', '.join(missing)}")
    if len(set(header)) != len(header) or "" in header or any(h.startswith("_") for h in header):
        raise IngestError(f"{rel}: line 1: column names must be unique, non-empty and not start with '_'")
    outcome = _Outcome()
    new_columns = _add_new_columns(conn, table, header)
    if new_columns:
        outcome.drift = new_columns
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in header)
    fast = sql.SQL("copy {} ({}) from stdin with (format csv, header true, encoding 'UTF8')").format(target, columns)
    try:
        with conn.transaction(), conn.cursor() as cur:  # a savepoint: the slow path can follow
            with cur.copy(fast) as copy, open(job.path, "rb") as fh:
                if first.startswith(b"\xef\xbb\xbf"):  # COPY would read the BOM as part of the first name
                    fh.seek(3)
                while chunk := fh.read(COPY_CHUNK):
                    copy.write(chunk)
            outcome.rows = cur.rowcount
            return outcome
    except psycopg.DataError as exc:
        log.info("%s: COPY refused the file (%s); checking it row by row", rel, str(exc).strip())
    slow = sql.SQL("copy {} ({}) from stdin").format(target, columns)
    with conn.cursor() as cur, cur.copy(slow) as copy:
        for line, record, fields, problem in _csv_records(job.path, len(header)):
            if problem:
                outcome.bad.append((line, record, problem, fields))
            else:
                copy.write_row(fields)
                outcome.rows += 1
    return outcome


def _csv_records(path: Path, width: int) -> Iterator[tuple[int, int, object, str | None]]:
    """(line, record number, fields or raw text, problem) for each data record of a CSV file."""
    text = path.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        next(reader)
        for record, fields in enumerate(reader, start=1):
            line = reader.line_num
            raw = ",".join(fields).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            if not fields:
                continue
            if any("\udc80" <= ch <= "\udcff" for f in fields for ch in f):
                yield line, record, raw, "not valid UTF-8"
            elif len(fields) != width:
                yield line, record, raw, f"expected {width} fields, found {len(fields)}"
            elif any("\x00" in f for f in fields):
                yield line, record, raw, "contains a NUL character"
            else:
                yield line, record, fields, None
    except csv.Error as exc:
        raise IngestError(f"{path.name}: line {reader.line_num}: unreadable CSV ({exc})") from None


def _add_new_columns(conn: psycopg.Connection, table: CsvTable, header: list[str]) -> list[str]:
    """Columns in the file that the raw table lacks: added (as text), returned for the drift log."""
    existing = {r[0] for r in conn.execute(
        "select column_name from information_schema.columns where table_schema = 'raw' and table_name = %s",
        (table.table,))}
    added = [c for c in header if c not in existing]
    for column in added:
        if len(column.encode()) > 63:
            raise IngestError(f"column name too long for PostgreSQL (63 bytes): {column[:70]!r}")
        conn.execute(sql.SQL("alter table {} add column if not exists {} text").format(
            sql.Identifier("raw", table.table), sql.Identifier(column)))
    return added


def _json_records(job: _FileLoad) -> Iterator[tuple[int, int, str, str | None, list[str]]]:
    """(line, record number, text, problem, unknown fields) for every record of a JSON source file."""
    table, rel = job.table, job.rel

    def check(record: object) -> tuple[str | None, list[str]]:
        if not isinstance(record, dict):
            return f"expected a JSON object, got {type(record).__name__}", []
        absent = [k for k in table.required if record.get(k) in (None, "")]
        if absent:
            return f"required field(s) missing: {', '.join(absent)}", []
        unknown = [k for k in record if table.known and k not in table.known]
        return None, unknown

    if table.json_lines:
        with open(job.path, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    yield number, number, raw.decode("utf-8", "backslashreplace"), "not valid UTF-8", []
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield number, number, line, f"invalid JSON ({exc.msg})", []
                    continue
                problem, unknown = check(record)
                yield number, number, line.rstrip("\n"), problem, unknown
        return
    try:
        document = json.loads(job.path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise IngestError(f"{rel}: byte {exc.start}: the file is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise IngestError(f"{rel}: line {exc.lineno}: invalid JSON ({exc.msg}); nothing from it was loaded") from None
    records = document.get(table.list_key) if isinstance(document, dict) else None
    if not isinstance(records, list):
        raise IngestError(f"{rel}: expected a JSON object with a list under {table.list_key!r}")
    for number, record in enumerate(records, start=1):
        problem, unknown = check(record)
        yield None, number, json.dumps(record, ensure_ascii=False), problem, unknown


def _copy_json(conn: psycopg.Connection, job: _FileLoad, target: sql.Identifier) -> _Outcome:
    stmt = sql.SQL("copy {} (_record_number, record) from stdin").format(target)
    outcome = _Outcome()
    unknown_fields: dict[str, None] = {}
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for line, number, text, problem, unknown in _json_records(job):
            if problem:
                outcome.bad.append((line, number, problem, text))
                continue
            for name in unknown:
                unknown_fields.setdefault(name, None)
            copy.write_row((number, text))
            outcome.rows += 1
    outcome.drift = list(unknown_fields)
    return outcome


def unload_batches(wh: Warehouse, batch_ids: list[str]) -> dict[str, int]:
    """Remove every row and ledger entry of ``batch_ids`` (a run whose raw gate failed).

    The files become unloaded again, so the next run retries them: a rejected
    batch can neither reach the marts later nor be silently skipped.
    """
    removed: dict[str, int] = {}
    if not batch_ids:
        return removed
    with wh.connect() as conn, conn.transaction():
        conn.execute("delete from raw._quarantine where _batch_id = any(%s)", (batch_ids,))
        for source in SOURCES.values():
            for table in source.tables:
                cur = conn.execute(
                    sql.SQL("delete from {} where _batch_id = any(%s)").format(sql.Identifier("raw", table.table)),
                    (batch_ids,))
                if cur.rowcount:
                    removed[table.table] = cur.rowcount
        conn.execute("delete from audit.load_files where batch_id = any(%s)", (batch_ids,))
    log.warning("unloaded rejected batches %s: %s", batch_ids, removed)
    return removed
