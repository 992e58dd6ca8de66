"""JSON drops (one document with a list of records, or JSON lines): clean JSON lines stream to COPY
and PostgreSQL parses them; otherwise each record is parsed and checked in Python, and the ones
that are no records (broken JSON, not an object, a required field missing, NaN, a NUL character)
go to the quarantine with their line or number."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from crm360.ingest import drops
from crm360.ingest.batch import COPY_CHUNK, MAX_DOCUMENT_ENV, IngestError, Outcome, max_document_bytes
from crm360.ingest.drops import FileLoad
from crm360.ingest.sources import (
    JsonTable,
)

log = logging.getLogger(__name__)


def records(job: FileLoad) -> Iterator[tuple[int | None, int, str, str | None, list[str]]]:
    """(line, record number, text, problem, unknown fields) for every record of a JSON source file.

    Records are renamed to crm360's field names (``columns`` in sources.yml) before
    they are checked and stored."""
    table, rel = job.drop.table, job.rel
    contract: JsonTable = job.contract  # type: ignore[assignment]
    rename = table.to_contract()

    def check(record: object) -> tuple[object, str | None, list[str]]:
        if not isinstance(record, dict):
            return record, f"expected a JSON object, got {JSON_TYPES.get(type(record), 'a value')}", []
        if rename:
            record = {rename.get(k, k): v for k, v in record.items()}
        absent = [k for k in contract.required if record.get(k) in (None, "")]
        if absent:
            return record, f"required field(s) missing: {', '.join(absent)}", []
        for k in contract.required:
            if isinstance(record[k], (dict, list, bool)):
                return record, f"{k}: expected a string or number, got {JSON_TYPES[type(record[k])]}", []
        problem = unstorable(record)
        if problem:
            return record, problem, []
        unknown = [k for k in record if contract.known and k not in contract.known]
        return record, None, unknown

    if table.format == "jsonl":
        with job.drop.open() as fh:
            for number, raw in drops.lines(fh, rel):
                raw = without_bom(raw, number)
                if not raw.strip():
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    yield number, number, raw.decode("utf-8", "backslashreplace"), "not valid UTF-8", []
                    continue
                try:
                    record = parse(line)
                except json.JSONDecodeError as exc:
                    yield number, number, line.rstrip("\n"), f"invalid JSON ({exc.msg})", []
                    continue
                except RecursionError:
                    yield number, number, line.rstrip("\n")[:10_000], "a record nested too deeply to be read", []
                    continue
                record, problem, unknown = check(record)
                text = dump(record) if rename else line.rstrip("\n")
                yield number, number, text, problem, unknown
        return
    limit = max_document_bytes()
    with job.drop.open() as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise IngestError(f"{rel}: the JSON document is larger than {limit} bytes ({MAX_DOCUMENT_ENV}); split the "
                          "export into smaller files or raise the limit; nothing from it was loaded")
    try:
        document = parse(data.decode("utf-8-sig"))  # a byte-order mark before the document is no content
    except RecursionError:
        raise IngestError(f"{rel}: the JSON document is nested too deeply to be read; nothing from it was "
                          "loaded") from None
    except UnicodeDecodeError as exc:
        raise IngestError(f"{rel}: byte {exc.start}: the file is not valid UTF-8; nothing from it was loaded") from None
    except json.JSONDecodeError as exc:
        raise IngestError(f"{rel}: line {exc.lineno}: invalid JSON ({exc.msg}); nothing from it was loaded") from None
    records = document.get(table.list_key) if isinstance(document, dict) else None
    if not isinstance(records, list):
        raise IngestError(f"{rel}: expected a JSON object with a list under {table.list_key!r}")
    for number, record in enumerate(records, start=1):
        record, problem, unknown = check(record)
        yield None, number, dump(record), problem, unknown


class NotJson:
    """NaN, Infinity or -Infinity where a JSON number should be: Python's parser takes them, JSON
    (and PostgreSQL's jsonb) does not. The record holding one is quarantined, the rest of its file loads."""

    def __init__(self, name: str) -> None:
        self.name = name


def parse(text: str):
    return json.loads(text, parse_constant=NotJson)


def dump(record: object) -> str:
    """A record as JSON text again (a NaN written as it came, for the quarantine)."""
    return json.dumps(record, ensure_ascii=False, default=lambda o: o.name if isinstance(o, NotJson) else str(o))


def without_bom(line: bytes, number: int) -> bytes:
    """A JSON-lines file's first line without a UTF-8 byte-order mark (editors on Windows write one)."""
    return line[3:] if number == 1 and line.startswith(b"\xef\xbb\xbf") else line


JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


SURROGATE = re.compile("[\ud800-\udfff]")


def unstorable(value: object, where: str = "") -> str | None:
    """Why PostgreSQL cannot store a parsed JSON value (a NUL character or a lone UTF-16
    surrogate in a string or key: JSON allows both, jsonb and text do not), or None."""
    if isinstance(value, NotJson):
        return f"{where or 'a value'}: {value.name} is not a JSON number"
    if isinstance(value, str):
        if "\x00" in value:
            return f"{where or 'a value'}: contains a NUL character (\\u0000), which PostgreSQL cannot store"
        if SURROGATE.search(value):
            return f"{where or 'a value'}: contains a lone UTF-16 surrogate, which is not a character"
        return None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return None
    for key, item in items:
        path = f"{where}.{key}" if where else key
        problem = unstorable(key, path) if isinstance(value, dict) else None
        problem = problem or unstorable(item, path)
        if problem:
            return problem
    return None


COPY_BATCH_LINES = 20_000


def copy_json(conn: psycopg.Connection, job: FileLoad, target: sql.Identifier) -> Outcome:
    """JSON lines stream to COPY as they are when the file is clean; else (or for JSON
    documents, or renamed fields) each record is parsed and checked in Python."""
    if job.drop.table.format == "jsonl" and not job.drop.table.to_contract():
        fast = copy_jsonl_fast(conn, job, target)
        if fast is not None:
            return fast
    return copy_checked(conn, job, target)


def copy_jsonl_fast(conn: psycopg.Connection, job: FileLoad, target: sql.Identifier) -> Outcome | None:
    """COPY every line with its number; PostgreSQL parses the JSON. Records that are not
    objects or lack a required field are taken out again in SQL, and unknown fields are
    read from the loaded rows. Returns None when COPY refuses the file (broken JSON,
    bytes that are not UTF-8): the caller then checks it line by line."""
    contract: JsonTable = job.contract  # type: ignore[assignment]
    stmt = sql.SQL("copy {} (_record_number, record) from stdin").format(target)
    try:
        with conn.transaction(), conn.cursor() as cur:  # a savepoint: the checked path can follow
            # a thread sends while this one escapes the next lines: the server parses meanwhile
            with cur.copy(stmt, writer=QueuedLibpqWriter(cur)) as copy, job.drop.open() as fh:
                batch: list[bytes] = []
                size = 0
                for number, raw in drops.lines(fh, job.rel):
                    line = without_bom(raw, number).rstrip(b"\r\n")
                    if not line.strip():
                        continue
                    # COPY's text format: escape its escape character and its separators
                    line = line.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\r", b"\\r")
                    batch.append(b"%d\t%s\n" % (number, line))
                    size += len(line)
                    if len(batch) >= COPY_BATCH_LINES or size >= 8 * COPY_CHUNK:
                        copy.write(b"".join(batch))
                        batch.clear()
                        size = 0
                if batch:
                    copy.write(b"".join(batch))
            rows = cur.rowcount
    except psycopg.Error as exc:
        # broken JSON, bytes that are not UTF-8, or a record nested deeper than the server parses
        # (class 54): each line is then checked on its own, and only the bad ones quarantined
        if not isinstance(exc, psycopg.DataError) and not (exc.sqlstate or "").startswith("54"):
            raise
        log.info("%s: COPY refused the file (%s); checking it line by line", job.rel, str(exc).strip())
        return None
    required = [sql.SQL("case when coalesce(record ->> {k}, '') = '' then {k} end").format(k=sql.Literal(k))
                for k in contract.required]
    missing = sql.SQL("concat_ws(', ', {})").format(sql.SQL(", ").join(required)) if required else sql.SQL("''")
    # an id that is an object, an array or a boolean is no id (the same checks as _json_records)
    typed = [sql.SQL("case when jsonb_typeof(record -> {k}) in ('object', 'array', 'boolean') then {k} || "
                     "': expected a string or number, got ' || jsonb_typeof(record -> {k}) end").format(
                         k=sql.Literal(k)) for k in contract.required]
    problem = sql.SQL("case when jsonb_typeof(record) <> 'object' then 'expected a JSON object, got ' "
                      "|| jsonb_typeof(record) when {m} <> '' then 'required field(s) missing: ' || {m} "
                      "else {t} end").format(m=missing, t=sql.SQL("coalesce({})").format(sql.SQL(", ").join(typed))
                                             if typed else sql.SQL("null"))
    outcome = Outcome(rows=rows, malformed=problem)  # taken out by _invalid_values, in its one pass
    if contract.known:
        # unknown fields of the records that are records (those with bad values too, as on the
        # checked path), read before anything is taken out; the known fields are subtracted and the
        # rest enumerated only where something is left: three times faster than every field of every record
        # (the CASE, not the WHERE, keeps scalars from '-': the planner may test e.extra first)
        keys = conn.execute(sql.SQL("select distinct k from (select case when jsonb_typeof(record) = 'object' "
                                    "then record - %s::text[] end as extra from {t} "
                                    "where _source_file = %s and ({p}) is null) as e, jsonb_object_keys(e.extra) as k "
                                    "where e.extra <> '{{}}'::jsonb").format(t=target, p=problem),
                            (list(contract.known), job.rel)).fetchall()
        outcome.drift = sorted(k for (k,) in keys)
    return outcome


def copy_checked(conn: psycopg.Connection, job: FileLoad, target: sql.Identifier) -> Outcome:
    stmt = sql.SQL("copy {} (_record_number, record) from stdin").format(target)
    outcome = Outcome()
    unknown_fields: dict[str, None] = {}
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for line, number, text, problem, unknown in records(job):
            if problem:
                outcome.bad.append((line, number, problem, text))
                continue
            for name in unknown:
                unknown_fields.setdefault(name, None)
            copy.write_row((number, text))
            outcome.rows += 1
    outcome.drift = list(unknown_fields)
    return outcome
