"""CSV drops: the header checked against the contract, the file streamed to COPY as it is when it
can be, and read row by row when COPY refuses it (or it holds columns the contract does not
know, which go to the row's ``_extra``)."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator

import psycopg
from psycopg import sql

from crm360.ingest import drops
from crm360.ingest.batch import COPY_CHUNK, IngestError, Outcome, max_record_bytes
from crm360.ingest.drops import FileLoad
from crm360.ingest.shape import Shaper
from crm360.ingest.sources import (
    CsvTable,
)

log = logging.getLogger(__name__)


def header(job: FileLoad) -> tuple[bytes, list[str], list[str]]:
    """(first line, header as in the file, header as crm360 columns) of a CSV drop."""
    table, rel = job.drop.table, job.rel
    if table.format == "xlsx":
        first = b""
        with job.drop.open() as fh:
            names = [h.strip() for h in next(drops.table_reader(job.drop, fh, "strict"), [])]
        if not names:
            raise IngestError(f"{rel}: row 1: empty sheet, expected a header row")
    else:
        with job.drop.open() as fh:
            first = next((line for _, line in drops.lines(fh, rel)), b"")
        try:
            header_line = first.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise IngestError(f"{rel}: line 1: the header is not valid UTF-8") from None
        if not header_line.strip():
            raise IngestError(f"{rel}: line 1: empty file, expected a CSV header")
        try:
            names = [h.strip() for h in next(csv.reader([header_line], delimiter=table.delimiter))]
        except csv.Error as exc:
            raise IngestError(f"{rel}: line 1: unreadable CSV header ({exc})") from None
    to_contract = table.to_contract()
    header = [to_contract.get(h, h) for h in names]
    contract = job.contract
    filled = table.provided | set(table.shape.defaults if table.shape else ())
    missing = [c for c in contract.required if c not in header and c not in filled]
    if missing:
        renamed = {c: table.columns[c] for c in missing if c in table.columns}
        hint = "".join(f" ({c} is read from column {e!r})" for c, e in renamed.items())
        raise IngestError(f"{rel}: line 1: required column(s) missing: {', '.join(missing)}{hint}")
    if len(set(header)) != len(header) or "" in header or any(h.startswith("_") for h in header):
        raise IngestError(f"{rel}: line 1: column names must be unique, non-empty and not start with '_'")
    return first, names, header


def copy_csv(conn: psycopg.Connection, job: FileLoad, target: sql.Identifier, first: bytes,
              header: list[str]) -> Outcome:
    """COPY the file as it is when its columns are the contract's; else, and when COPY refuses it,
    row by row, with the columns the contract does not know kept in the row's ``_extra``."""
    rel, delimiter = job.rel, job.drop.table.delimiter
    outcome = Outcome()
    known = [i for i, c in enumerate(header) if c in job.contract.columns]
    foreign = [i for i, c in enumerate(header) if c not in job.contract.columns]
    shaper = Shaper.of(job.drop.table, header, job.drop.file) if job.drop.table.shape else None
    if shaper is not None:
        return _copy_shaped(conn, job, target, header, shaper, foreign, outcome)
    if not foreign and job.drop.table.format == "csv":  # COPY reads CSV itself; a workbook goes row by row
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in header)
        fast = sql.SQL("copy {} ({}) from stdin with (format csv, header true, delimiter {}, "
                       "encoding 'UTF8')").format(target, columns, sql.Literal(delimiter))
        try:
            with conn.transaction(), conn.cursor() as cur:  # a savepoint: the slow path can follow
                with cur.copy(fast) as copy, job.drop.open() as fh:
                    if first.startswith(b"\xef\xbb\xbf"):  # COPY would read the BOM as part of the first name
                        fh.seek(3)
                    lengths = drops.LineLengths(rel, max_record_bytes())
                    while chunk := fh.read(COPY_CHUNK):
                        lengths.feed(chunk)
                        copy.write(chunk)
                outcome.rows = cur.rowcount
                return outcome
        except psycopg.DataError as exc:
            log.info("%s: COPY refused the file (%s); checking it row by row", rel, str(exc).strip())
    names = [header[i] for i in known] + (["_extra"] if foreign else [])
    slow = sql.SQL("copy {} ({}) from stdin").format(target, sql.SQL(", ").join(sql.Identifier(c) for c in names))
    with conn.cursor() as cur, cur.copy(slow) as copy:
        for line, record, fields, problem in records(job, len(header)):
            if problem:
                outcome.bad.append((line, record, problem, fields))
                continue
            row = [fields[i] for i in known]
            if foreign:  # the values given, by column name; null when the row leaves them all empty
                extra = {header[i]: fields[i] for i in foreign if fields[i] != ""}
                row.append(json.dumps(extra, ensure_ascii=False) if extra else None)
            copy.write_row(row)
            outcome.rows += 1
    return outcome


def _copy_shaped(conn: psycopg.Connection, job: FileLoad, target: sql.Identifier, header: list[str],
                 shaper: Shaper, foreign: list[int], outcome: Outcome) -> Outcome:
    """Row by row through the table's shape (crm360.ingest.shape): constants, row positions, dates and
    numbers rewritten; a value that does not fit its format makes the record bad."""
    names = shaper.names + (["_extra"] if foreign else [])
    types = dict(job.contract.types)
    stmt = sql.SQL("copy {} ({}) from stdin").format(target, sql.SQL(", ").join(sql.Identifier(c) for c in names))
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for line, record, fields, problem in records(job, len(header)):
            if not problem:
                row, problem = shaper.row(fields, record, types)
            if problem:
                raw = fields if isinstance(fields, str) else job.drop.table.delimiter.join(fields)
                outcome.bad.append((line, record, problem, raw))
                continue
            if foreign:
                extra = {header[i]: fields[i] for i in foreign if fields[i] != ""}
                row.append(json.dumps(extra, ensure_ascii=False) if extra else None)
            copy.write_row(row)
            outcome.rows += 1
    return outcome


def written_columns(job: FileLoad, header: list[str]) -> list[str]:
    """The contract columns a CSV file's load writes: its header's, and those its shape provides."""
    if not job.drop.table.shape:
        return header
    return header + [c for c in Shaper.of(job.drop.table, header, job.drop.file).names if c not in header]


def records(job: FileLoad, width: int) -> Iterator[tuple[int, int, object, str | None]]:
    """(line, record number, fields or raw text, problem) for each data record of a CSV file."""
    with job.drop.open() as fh:
        yield from checked(job, drops.table_reader(job.drop, fh, "surrogateescape"), width)


def checked(job: FileLoad, reader, width: int) -> Iterator[tuple[int, int, object, str | None]]:
    delimiter = job.drop.table.delimiter
    try:
        next(reader)
        for record, fields in enumerate(reader, start=1):
            line = reader.line_num
            raw = delimiter.join(fields).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
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
        raise IngestError(f"{job.rel}: line {reader.line_num}: unreadable CSV ({exc})") from None


def new_columns(conn: psycopg.Connection, table: CsvTable, header: list[str]) -> list[str]:
    """Columns of the file the contract does not know and the drift log has not seen yet. Their
    values are kept in the rows' ``_extra`` (a load changes no table's columns)."""
    foreign = [c for c in header if c not in table.columns]
    if not foreign:
        return []
    seen = drift_seen(conn, table)
    return [c for c in foreign if c not in seen]


def drift_seen(conn: psycopg.Connection, table: CsvTable) -> set[str]:
    return {r[0] for r in conn.execute(
        "select column_name from audit.schema_drift where table_name = %s", (table.table,))}
