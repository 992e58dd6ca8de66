"""The contract's checks on rows COPY just wrote: values that do not parse as the contract's type
(a date of 2026-02-30, an amount too large for staging), impossible values (a negative quantity),
implausible years; the bad records are taken out of raw and into ``raw._quarantine`` with file,
line and reason. Done in SQL, so clean files keep COPY's speed."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import psycopg
from psycopg import sql

from crm360.ingest import csvfile, drops, jsonfile
from crm360.ingest.batch import PLAUSIBLE_YEARS, UNREADABLE_FRACTION, IngestError, Outcome, where
from crm360.ingest.drops import FileLoad
from crm360.ingest.shape import Shaper
from crm360.ingest.sources import (
    CsvTable,
    JsonTable,
)

log = logging.getLogger(__name__)


def copy_checked(conn: psycopg.Connection, job: FileLoad, target: sql.Identifier, first: bytes = b"",
                 header: list[str] | None = None, rules: tuple = ()) -> Outcome:
    """COPY a file's records into ``target`` and take out again, in SQL, those whose values break the
    contract: what every load of a file does, and what ``crm360 sources check`` does on a sample.
    ``first`` and ``header`` are a CSV file's (``csvfile.header``). The outcome's ``bad`` records
    are the malformed ones and those taken out; a file mostly made of them fails (``check_file``).
    ``rules``: more (condition, reason) pairs over the whole row (``invalid_values``)."""
    if isinstance(job.contract, CsvTable):
        outcome = csvfile.copy_csv(conn, job, target, first, header or [])
        written = csvfile.written_columns(job, header or [])
    else:
        outcome, written = jsonfile.copy_json(conn, job, target), None
    # in raw and counted: taken out
    moved = invalid_values(conn, job, target, written, outcome.malformed, rules)
    outcome.rows -= len(moved)
    outcome.bad += moved
    check_file(job, outcome)
    return outcome


def check_file(job: FileLoad, outcome: Outcome) -> None:
    """A file mostly made of malformed records is the wrong file, whatever the rest of the batch holds."""
    total = outcome.rows + len(outcome.bad)
    if outcome.bad and len(outcome.bad) / total > UNREADABLE_FRACTION:
        first = outcome.bad[0]
        raise IngestError(
            f"{job.rel}: {where(first)}: {first[2]}; {len(outcome.bad)} of {total} records malformed "
            f"({len(outcome.bad) / total:.1%}); nothing from the file was loaded")


def invalid_values(conn: psycopg.Connection, job: FileLoad, target: sql.Identifier,
                    header: list[str] | None, malformed: sql.Composable | None = None,
                    rules: tuple[tuple[sql.Composable, sql.Composable], ...] = ()) -> list[tuple]:
    """Take the file's records whose values break the contract (bad dates, negative
    quantities, ...) out of the raw table; return them for the quarantine. With
    ``malformed`` (JSON lines loaded unchecked), the records that are no records at all
    go in the same pass, with that reason first.

    Done in SQL on the rows COPY just wrote, so clean files keep COPY's speed; one pass
    over the file's rows for both kinds of bad record. ``rules`` are more (condition, reason) pairs
    over the whole row (an order in a currency without a rate), judged after the columns' own."""
    contract = job.contract
    if not contract.types and not contract.checks and malformed is None and not rules:
        return []
    json_table = isinstance(contract, JsonTable)

    def value(column: str) -> sql.Composable:
        return sql.SQL("(record ->> {})").format(sql.Literal(column)) if json_table else sql.Identifier(column)

    present = set(header) if header is not None else None  # a CSV may lack optional columns
    # Per column: a cheap test that the value is fine (the usual case), then the conditions that
    # say why it is not, evaluated only for the values that fail it. Each condition goes first
    # where it is cheapest; AND stops at the first false.
    reasons = []  # (condition, reason text) for the CASE that names the first reason of a bad row
    suspects = []  # per column: a row may be bad because of it
    for column, type_name in contract.types:
        if present is not None and column not in present:
            continue
        v = value(column)
        invalid = sql.SQL("not raw._is_valid({v}, {t}) and nullif(btrim({v}), '') is not null").format(
            v=v, t=sql.Literal(type_name))
        if type_name not in MOMENT_TYPES:
            reasons.append((invalid, sql.SQL("{} || left({}, 80)").format(
                sql.Literal(f"{column}: not a valid {type_name}: "), v)))
            suspects.append(invalid)
            continue
        # PostgreSQL reads 'yesterday', 'now' and 'infinity' as moments; no export means them
        literal = sql.SQL(r"{} ~ '^\s*[0-9]'").format(v)
        low, high = PLAUSIBLE_YEARS
        # valid, but no real record is dated in year 1 or 9999: read from the digits before the
        # first '-' and the era, not by casting (a second validity check per value)
        implausible = sql.SQL(
            r"{v} ~ '^\s*[0-9]{{1,9}}-' and (substring({v} from '^\s*([0-9]{{1,9}})-')::integer "
            r"not between {lo} and {hi} or {v} ~* '\mBC\s*$')").format(v=v, lo=sql.Literal(low), hi=sql.Literal(high))
        reasons.append((sql.SQL("nullif(btrim({v}), '') is not null and not (raw._is_valid({v}, {t}) and {lit})")
                        .format(v=v, t=sql.Literal(type_name), lit=literal),
                        sql.SQL("{} || left({}, 80)").format(sql.Literal(f"{column}: not a valid {type_name}: "), v)))
        reasons.append((implausible, sql.SQL("{} || left({}, 80)").format(
            sql.Literal(f"{column}: a year outside the plausible {low} to {high}: "), v)))
        # fine for sure: four digits in the plausible years, a '-', no era (no B anywhere), valid;
        # text comparisons in the C collation, no regular expression (the costly part per value)
        fine = sql.SQL(
            "{v} collate \"C\" >= {lo_t} and {v} collate \"C\" < {hi_t} and substr({v}, 5, 1) = '-' "
            "and translate(left({v}, 4), '0123456789', '') = '' and strpos({v}, 'B') = 0 "
            "and strpos({v}, 'b') = 0 and raw._is_valid({v}, {t})").format(
                v=v, t=sql.Literal(type_name), lo_t=sql.Literal(f"{low:04d}-"), hi_t=sql.Literal(f"{high + 1:04d}"))
        suspects.append(sql.SQL("{v} is not null and not coalesce({fine}, false) and (({a}) or ({b}))").format(
            v=v, fine=fine, a=reasons[-2][0], b=reasons[-1][0]))
    types = dict(contract.types)
    for column, condition, reason in contract.checks:
        if present is not None and column not in present:
            continue
        v = value(column)
        cond = sql.SQL(condition.replace("v::", "{v}::")).format(v=v)
        broken = sql.SQL("not ({}) and nullif(btrim({}), '') is not null").format(cond, v)
        if column in types:  # the check casts: only values of the type can break it
            broken = sql.SQL("raw._is_valid({}, {}) and {}").format(v, sql.Literal(types[column]), broken)
        reasons.append((broken, sql.SQL("{} || left({}, 80)").format(sql.Literal(f"{column}: {reason}: "), v)))
        suspects.append(broken)
    for condition, reason in rules:
        reasons.append((condition, reason))
        suspects.append(condition)
    if malformed is not None:
        # first: a record that is not an object, or lacks a required field, has no values to judge
        reasons.insert(0, (sql.SQL("({}) is not null").format(malformed), malformed))
        suspects.insert(0, reasons[0][0])
    if not reasons:
        return []
    any_bad = sql.SQL(" or ").join(sql.SQL("({})").format(c) for c in suspects)
    case = sql.SQL("case {} end").format(sql.SQL(" ").join(
        sql.SQL("when {} then {}").format(c, r) for c, r in reasons))
    if json_table:
        payload = sql.SQL("_record_number, record::text")
    else:
        cols = [c for c in contract.columns if c in present]
        payload = sql.SQL("array[{}]::text[]").format(sql.SQL(", ").join(sql.Identifier(c) for c in cols))
    rows = conn.execute(sql.SQL("delete from {t} where _source_file = %s and ({bad}) returning {case}, {payload}")
                        .format(t=target, bad=any_bad, case=case, payload=payload), (job.rel,)).fetchall()
    if not rows:
        return []
    if json_table:
        lines = job.drop.table.format == "jsonl"  # there a record's number is its line
        return [(number if lines else None, number, reason, text) for reason, number, text in sorted(
            rows, key=lambda row: row[1])]
    by_values: dict[tuple, list[str]] = {}
    for reason, values in rows:
        by_values.setdefault(tuple(v or "" for v in values[:len(cols)]), []).append(reason)
    found = [(line, record, reason, raw) for line, record, raw, reason in locate(job, header, cols, by_values)]
    # a record the second read cannot place still goes to the quarantine, only without its line
    unplaced = [(None, None, reason, ",".join(key)) for key, reasons in by_values.items() for reason in reasons]
    return found + unplaced


MOMENT_TYPES = {"timestamptz", "timestamp", "date"}


def locate(job: FileLoad, header: list[str], cols: list[str], wanted: dict[tuple, list[str]]) -> Iterator[tuple]:
    """Line and record numbers of the CSV records SQL validation rejected (read again,
    only for files that had any). ``header`` is the file's header as crm360 columns."""
    with job.drop.open() as fh:
        reader = drops.table_reader(job.drop, fh, "replace")
        width = len(next(reader))
        index = [header.index(c) if c in header else None for c in cols]
        # a shaped table's values are the shape's (constants, row numbers, dates rewritten): computed again
        shaper = Shaper.of(job.drop.table, header[:width], job.drop.file) if job.drop.table.shape else None
        types = dict(job.contract.types)
        for record, fields in enumerate(reader, start=1):
            if shaper is not None:
                row, problem = shaper.row(fields, record, types) if len(fields) == width else ([], "width")
                if problem:
                    continue
                values = dict(zip(shaper.names, row, strict=True))
                key = tuple(values.get(c) or "" for c in cols)
            else:
                key = tuple(fields[i] if i is not None and i < len(fields) else "" for i in index)
            if key in wanted and wanted[key]:
                yield reader.line_num, record, job.drop.table.delimiter.join(fields), wanted[key].pop()


def quarantine(conn: psycopg.Connection, job: FileLoad, bad: list) -> None:
    stmt = """copy raw._quarantine (source, table_name, source_file, line_number, record_number, reason,
                                    raw_record, _batch_id, _loaded_at) from stdin"""
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for line, record, reason, raw in bad:
            # text holds neither NUL nor lone surrogates: those are shown escaped (\x00, \ud83e)
            raw = raw[:10_000].replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
            copy.write_row((job.source, job.contract.table, job.rel, line, record, reason, raw,
                            job.batch_id, job.loaded_at))


def record_drift(conn: psycopg.Connection, job: FileLoad, columns: list[str]) -> None:
    change = "column kept in _extra" if isinstance(job.contract, CsvTable) else "field kept in record"
    for column in columns:
        conn.execute(
            """insert into audit.schema_drift
                   (source, table_name, column_name, change, first_seen_file, first_seen_batch, detected_at)
               values (%s, %s, %s, %s, %s, %s, now())
               on conflict (table_name, column_name) do nothing""",
            (job.source, job.contract.table, column, change, job.rel, job.batch_id))
    log.warning("%s: schema drift, new %s: %s", job.rel, "columns" if change.startswith("column") else "fields",
                ", ".join(columns))
