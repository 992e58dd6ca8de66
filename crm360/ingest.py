"""Load source drops into the ``raw`` schema with PostgreSQL COPY.

Every raw row carries ``_batch_id``, ``_source_file`` and ``_loaded_at``. Those
columns default to transaction-local settings, so a CSV is streamed to COPY as it
is, without being parsed in Python.

A file is the unit of work: it is loaded in one transaction that first removes
any earlier rows of the same file, then records the file and its checksum in
``audit.load_files``. Re-running a load therefore never duplicates rows, a file
whose bytes have not changed is skipped, and a failure leaves nothing partial.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
                  list_key="tickets", required=("id", "created_at")),
    )),
    "web": Source("web", "web", (
        JsonTable("events", "events_*.jsonl", "web_events", json_lines=True,
                  required=("event_id", "visitor_id", "occurred_at")),
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


def prepare_raw(wh: Warehouse) -> None:
    """Create raw tables and the load ledger (idempotent)."""
    with wh.connect() as conn:
        conn.execute(AUDIT_DDL)
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

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def as_dict(self) -> dict:
        return {"source": self.source, "batch_id": self.batch_id,
                "files_loaded": len(self.files_loaded), "files_skipped": len(self.files_skipped),
                "rows": dict(self.rows)}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(COPY_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def discover(landing: Path, source: Source) -> Iterator[tuple[CsvTable | JsonTable, Path]]:
    """Every file of ``source`` under ``landing``, in name (that is, date) order."""
    base = landing / source.folder
    for table in source.tables:
        for path in sorted(base.glob(table.pattern)):
            if path.is_file():
                yield table, path


def load_source(wh: Warehouse, landing: Path, source_name: str, batch_id: str,
                loaded_at: datetime | None = None) -> LoadResult:
    """Load every new or changed file of one source. Safe to re-run."""
    if source_name not in SOURCES:
        raise IngestError(f"unknown source {source_name!r}; known: {', '.join(SOURCES)}")
    source = SOURCES[source_name]
    landing = Path(landing)
    loaded_at = loaded_at or datetime.now(UTC)
    prepare_raw(wh)
    result = LoadResult(source=source_name, batch_id=batch_id)
    with wh.connect() as conn:
        known = dict(conn.execute(
            "select source_file, sha256 from audit.load_files where source = %s", (source_name,)
        ).fetchall())
        conn.commit()
        for table, path in discover(landing, source):
            rel = path.relative_to(landing).as_posix()
            digest = sha256_of(path)
            if known.get(rel) == digest:
                result.files_skipped.append(rel)
                continue
            rows = _load_file(conn, source_name, table, path, rel, digest, batch_id, loaded_at)
            result.files_loaded.append(rel)
            result.rows[table.name] = result.rows.get(table.name, 0) + rows
    log.info("loaded %s: %d files, %d skipped, rows %s", source_name,
             len(result.files_loaded), len(result.files_skipped), result.rows)
    return result


def _load_file(conn: psycopg.Connection, source: str, table: CsvTable | JsonTable, path: Path,
               rel: str, digest: str, batch_id: str, loaded_at: datetime) -> int:
    target = sql.Identifier("raw", table.table)
    try:
        with conn.transaction():
            # one loader per file at a time, whatever process it runs in
            conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"{source}:{rel}",))
            for key, value in (("batch_id", batch_id), ("source_file", rel),
                               ("loaded_at", loaded_at.isoformat())):
                conn.execute("select set_config(%s, %s, true)", (f"crm360.{key}", value))
            conn.execute(sql.SQL("delete from {} where _source_file = %s").format(target), (rel,))
            if isinstance(table, CsvTable):
                rows = _copy_csv(conn, table, path, rel, target)
            else:
                rows = _copy_json(conn, table, path, rel, target)
            conn.execute(
                """insert into audit.load_files
                       (source, source_file, sha256, row_count, batch_id, loaded_at)
                   values (%s, %s, %s, %s, %s, %s)
                   on conflict (source, source_file) do update set
                       sha256 = excluded.sha256, row_count = excluded.row_count,
                       batch_id = excluded.batch_id, loaded_at = excluded.loaded_at""",
                (source, rel, digest, rows, batch_id, loaded_at),
            )
    except psycopg.Error as exc:
        detail = (exc.diag.context or "").strip().replace("\n", " ") if exc.diag else ""
        raise IngestError(f"{rel}: the database rejected the file ({exc.__class__.__name__}: "
                          f"{str(exc).strip()}{'; ' + detail if detail else ''}); nothing from "
                          "it was loaded") from exc
    return rows


def _copy_csv(conn: psycopg.Connection, table: CsvTable, path: Path, rel: str,
              target: sql.Identifier) -> int:
    with open(path, encoding="utf-8", newline="") as fh:
        try:
            header = next(csv.reader([fh.readline()]))
        except StopIteration:
            raise IngestError(f"{rel}: line 1: empty file, expected a CSV header") from None
    header = [h.strip() for h in header]
    missing = [c for c in table.required if c not in header]
    if missing:
        raise IngestError(f"{rel}: line 1: required column(s) missing: {', '.join(missing)}")
    unknown = [c for c in header if c not in table.columns]
    if unknown:
        raise IngestError(f"{rel}: line 1: unexpected column(s): {', '.join(unknown)}")
    stmt = sql.SQL("copy {} ({}) from stdin with (format csv, header true, encoding 'UTF8')").format(
        target, sql.SQL(", ").join(sql.Identifier(c) for c in header)
    )
    with conn.cursor() as cur:
        with cur.copy(stmt) as copy, open(path, "rb") as fh:
            while chunk := fh.read(COPY_CHUNK):
                copy.write(chunk)
        return cur.rowcount


def _records(table: JsonTable, path: Path, rel: str) -> Iterator[tuple[int, str]]:
    """(record number, JSON text) of every record, checked for syntax and required keys."""

    def check(number: int, record: object, where: str) -> None:
        if not isinstance(record, dict):
            raise IngestError(f"{rel}: {where}: expected a JSON object, got {type(record).__name__}")
        absent = [k for k in table.required if record.get(k) in (None, "")]
        if absent:
            raise IngestError(f"{rel}: {where}: required field(s) missing: {', '.join(absent)}")

    if table.json_lines:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise IngestError(f"{rel}: line {number}: invalid JSON ({exc.msg})") from None
                check(number, record, f"line {number}")
                yield number, line
        return
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise IngestError(f"{rel}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
    records = document.get(table.list_key) if isinstance(document, dict) else None
    if not isinstance(records, list):
        raise IngestError(f"{rel}: expected a JSON object with a list under {table.list_key!r}")
    for number, record in enumerate(records, start=1):
        check(number, record, f"record {number}")
        yield number, json.dumps(record, ensure_ascii=False)


def _copy_json(conn: psycopg.Connection, table: JsonTable, path: Path, rel: str,
               target: sql.Identifier) -> int:
    stmt = sql.SQL("copy {} (_record_number, record) from stdin").format(target)
    rows = 0
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for number, text in _records(table, path, rel):
            copy.write_row((number, text))
            rows += 1
    return rows


def unload_batches(wh: Warehouse, batch_ids: list[str]) -> dict[str, int]:
    """Remove every row and ledger entry of ``batch_ids`` (a run whose raw gate failed).

    The files become unloaded again, so the next run retries them: a rejected
    batch can neither reach the marts later nor be silently skipped.
    """
    removed: dict[str, int] = {}
    if not batch_ids:
        return removed
    with wh.connect() as conn, conn.transaction():
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
