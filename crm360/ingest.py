"""Load source drops into the ``raw`` schema with PostgreSQL COPY.

What each source feeds is crm360's contract (``crm360.sources``); where its records
come from and how the export's columns are named is the deployment's
``sources.yml``. Files are read through fsspec, so a drop folder can be local or
any fsspec URL. SQL sources are read by ``crm360.sql_source``.

Every raw row carries ``_batch_id``, ``_source_file`` and ``_loaded_at``. Those
columns default to transaction-local settings, so a CSV is streamed to COPY as it
is, without being parsed in Python.

A file is the unit of work: it is loaded in one transaction that first removes
any earlier rows of the same file, then records the file and its checksum in
``audit.load_files``. Re-running a load therefore never duplicates rows, a file
whose bytes have not changed is skipped, and a failure leaves nothing partial.
Files are loaded ``CRM360_LOAD_WORKERS`` at a time (default: 2, or 1 on one CPU),
each worker with its own connection: one COPY keeps one server process busy, and
the checks after it run on the server too. The rows of a batch carry its one
``_loaded_at``, so the order the files commit in changes nothing downstream.

Malformed records (broken JSON lines, CSV rows with the wrong number of fields,
bytes that are not UTF-8, records missing a required field, values that do not
parse as the contract's type such as a date of 2026-02-30, impossible values such
as a negative quantity) go to ``raw._quarantine`` with file, line and reason. If
more than ``CRM360_MAX_BAD_ROW_FRACTION`` (default 1 %) of a batch's records are
malformed, the whole batch is taken back out and the load fails; a file of which
more than half is malformed is unreadable and fails on its own.

Limits on what one record may be, so a broken export fails clearly instead of exhausting
memory: a line of a CSV or JSON-lines file longer than ``CRM360_MAX_RECORD_BYTES``
(default 16 MiB) fails its file, read no further than that line's first 16 MiB, and so
does a JSON document larger than ``CRM360_MAX_DOCUMENT_BYTES`` (default 256 MiB).
Timestamps dated before 1900 or after 2099 are not mistakes of a day but sentinels or
typos (0001-01-01, 9999-12-31): their records are quarantined like other bad values.
JSON strings holding a NUL character or a lone UTF-16 surrogate, which PostgreSQL
cannot store, and required ids that are objects, arrays or booleans are quarantined too.
Drops compressed with gzip, bz2, xz or zstd (by their file name) are read decompressed; a
truncated or corrupt one fails its file with the reason.

Schema drift: a CSV column the contract does not know is added to the raw table
(kept, not dropped) and a JSON field it does not know stays in ``record``; both
are reported in ``audit.schema_drift``. A missing required column fails the file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import lzma
import os
import queue
import re
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import fsspec
import psycopg
from fsspec.utils import infer_compression
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from crm360 import ledger
from crm360.errors import Crm360Error, is_retryable
from crm360.schema import require_current
from crm360.settings import Settings, get_settings
from crm360.sources import (
    CONTRACT,
    Contract,
    CsvTable,
    FileSource,
    FileTable,
    JsonTable,
    SourceBinding,
    SqlSourceBinding,
    config_path,
    load_config,
)
from crm360.warehouse import Warehouse

log = logging.getLogger(__name__)

COPY_CHUNK = 1 << 20  # bytes handed to COPY per write
UNREADABLE_FRACTION = 0.5  # a file worse than this is not data with some dirt in it, it is the wrong file
MAX_RECORD_ENV, MAX_RECORD_DEFAULT = "CRM360_MAX_RECORD_BYTES", 16 << 20  # one line of a CSV or JSON-lines file
MAX_DOCUMENT_ENV, MAX_DOCUMENT_DEFAULT = "CRM360_MAX_DOCUMENT_BYTES", 256 << 20  # one JSON document file
LOAD_WORKERS_ENV = "CRM360_LOAD_WORKERS"  # files of a source loaded at once, each on its own connection
PLAUSIBLE_YEARS = (1900, 2099)  # timestamps dated in other years are quarantined


class IngestError(Crm360Error):
    """A source file cannot be loaded; the message names the file, line and reason."""


SOURCES = CONTRACT  # source name -> the raw tables it feeds


def bindings(settings: Settings | None = None) -> dict[str, SourceBinding]:
    """The deployment's ``sources.yml`` (or the file ``CRM360_SOURCES`` names)."""
    settings = settings or get_settings()
    return load_config(config_path(settings.project_dir))


def max_bad_fraction() -> float:
    value = os.environ.get("CRM360_MAX_BAD_ROW_FRACTION", "0.01")
    try:
        fraction = float(value)
    except ValueError:
        raise IngestError(f"CRM360_MAX_BAD_ROW_FRACTION must be a number between 0 and 1, got {value!r}") from None
    if not 0 <= fraction <= 1:
        raise IngestError(f"CRM360_MAX_BAD_ROW_FRACTION must be between 0 and 1, got {value!r}")
    return fraction


def _byte_limit(env: str, default: int) -> int:
    value = os.environ.get(env)
    if not value:
        return default
    try:
        limit = int(value)
    except ValueError:
        raise IngestError(f"{env} must be a whole number of bytes, got {value!r}") from None
    if limit < 1:
        raise IngestError(f"{env} must be positive, got {value!r}")
    return limit


def load_workers() -> int:
    """How many files of a source load at once: CRM360_LOAD_WORKERS, else 2 (1 on one CPU)."""
    value = os.environ.get(LOAD_WORKERS_ENV)
    if not value:
        return min(2, os.cpu_count() or 1)
    try:
        workers = int(value)
    except ValueError:
        raise IngestError(f"{LOAD_WORKERS_ENV} must be a whole number, got {value!r}") from None
    if workers < 1:
        raise IngestError(f"{LOAD_WORKERS_ENV} must be at least 1, got {value!r}")
    return workers


def max_record_bytes() -> int:
    return _byte_limit(MAX_RECORD_ENV, MAX_RECORD_DEFAULT)


def max_document_bytes() -> int:
    return _byte_limit(MAX_DOCUMENT_ENV, MAX_DOCUMENT_DEFAULT)


# A file's rows are found by _source_file (a reload replaces them, the contract checks read them
# right after COPY). They lie together, in the pages COPY just appended: a BRIN index (migration
# 0001, 8 pages a range) finds them as well as a btree did, at a fraction of the cost of keeping a
# btree up for every row loaded (psql \copy of ten days of medium orders: +47 % time with the
# btree, +13 % with BRIN, against no index). Each file's load summarizes the ranges it filled.
def source_file_index(table: str) -> str:
    return f"{table}__source_file_brin"


def begin_file_load(conn: psycopg.Connection, source: str, source_file: str, batch_id: str,
                    loaded_at: datetime) -> None:
    """The first statement of a file's (or a window's) load transaction: one loader per file at a
    time, whatever process it runs in; the meta columns' defaults; and every later statement
    reading that file's rows by the BRIN index on _source_file, whatever the planner guesses of a
    table whose statistics predate the load (a scan of all of raw for each file would make a
    day's load cost its history)."""
    conn.execute("select pg_advisory_xact_lock(hashtext(%s)), set_config('crm360.batch_id', %s, true), "
                 "set_config('crm360.source_file', %s, true), set_config('crm360.loaded_at', %s, true), "
                 "set_config('enable_seqscan', 'off', true)",
                 (f"{source}:{source_file}", batch_id, source_file, loaded_at.isoformat()))


def summarize_source_files(conn: psycopg.Connection, table: str) -> None:
    """Summarize the BRIN ranges of _source_file that are not yet: a range left unsummarized is
    read by every later lookup. Summarizing needs the index's owner: a loader connected as a
    role that only writes raw skips it (autovacuum summarizes full ranges later; lookups stay
    right, only slower)."""
    conn.execute("select case when pg_has_role(current_user, i.relowner, 'USAGE') "
                 "then brin_summarize_new_values(i.oid) end from pg_class i where i.oid = to_regclass(%s)",
                 (sql.Identifier("raw", source_file_index(table)).as_string(conn),))


@dataclass
class LoadResult:
    source: str
    batch_id: str
    files_loaded: list[str] = field(default_factory=list)
    files_skipped: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    drift: list[str] = field(default_factory=list)
    replaced: int = 0  # files that replaced a version loaded before (kept aside until this batch is gated)
    adopted: tuple[str, ...] = ()  # other runs' batches waiting for their gate: this batch's gate checks them too

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def as_dict(self) -> dict:
        return {"source": self.source, "batch_id": self.batch_id,
                "files_loaded": len(self.files_loaded), "files_skipped": len(self.files_skipped),
                "files_replaced": self.replaced, "batch_ids": [self.batch_id, *self.adopted],
                "rows": dict(self.rows), "quarantined": dict(self.quarantined), "drift": list(self.drift)}


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


@dataclass(frozen=True)
class Drop:
    """One file of a source: where it is and the name it has in the ledger."""

    table: FileTable
    fs: fsspec.AbstractFileSystem
    path: str  # in ``fs``
    rel: str  # ``<source>/<path under the source's location>``: stable if the location moves

    @property
    def compression(self) -> str | None:
        return infer_compression(self.path)

    def open(self):
        """The file's bytes, decompressed if its name says it is compressed (.gz, .bz2, .xz, .zst)."""
        return self.fs.open(self.path, "rb", compression="infer")

    def open_stored(self):
        """The file's bytes as stored (what its checksum is taken of)."""
        return self.fs.open(self.path, "rb")


def _filesystem(source: FileSource, landing: Path) -> tuple[fsspec.AbstractFileSystem, str]:
    location = source.location
    if "://" not in location and not Path(location).is_absolute():
        location = str(Path(landing) / location)
    try:
        fs, root = fsspec.core.url_to_fs(location)
    except (ImportError, ValueError) as exc:
        raise IngestError(f"{source.name}: cannot open location {source.location!r}: {exc}") from None
    return fs, root.rstrip("/")


def discover(landing: Path, source: FileSource, until: date | None = None) -> Iterator[Drop]:
    """Every file of ``source`` in name (that is, date) order; with ``until``, only drops
    dated before it (a run for a data interval ending on ``until`` loads the days up
    to it; later drops wait for their own run)."""
    fs, root = _filesystem(source, landing)
    for table in source.tables:
        for path in sorted(fs.glob(f"{root}/{table.pattern}")):
            if not fs.isfile(path):
                continue
            rel = f"{source.name}/{path[len(root) + 1:]}" if path.startswith(root + "/") else f"{source.name}/{path}"
            day = file_date(rel)
            if until is not None and day is not None and day >= until:
                continue
            yield Drop(table, fs, path, rel)


def sha256_of(drop: Drop) -> str:
    digest = hashlib.sha256()
    with drop.open_stored() as fh:
        for chunk in iter(lambda: fh.read(COPY_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_source(wh: Warehouse, landing: Path, source_name: str, batch_id: str | None = None,
                loaded_at: datetime | None = None, until: date | None = None,
                config: dict[str, SourceBinding] | None = None, run_id: str | None = None) -> LoadResult:
    """Load every new or changed file (or cursor window) of one source, dated before ``until`` if
    given, as one attempt (crm360.ledger): ``batch_id`` names it, else it is the next attempt of
    ``run_id``. Safe to re-run: what is loaded is loaded exactly once.

    Whatever stops the attempt (a bad file, too many bad records, a file the readers choke on,
    a lost connection) takes back out exactly what it loaded and puts back what it replaced; the
    error names the file, and the line where known. Errors no retry can mend are IngestError."""
    if source_name not in CONTRACT:
        raise IngestError(f"unknown source {source_name!r}; known: {', '.join(CONTRACT)}")
    binding = (config or bindings())[source_name]
    threshold = max_bad_fraction()
    workers = load_workers()
    require_current(wh)  # the raw tables and the ledger are the migrations' (crm360 migrate)
    attempt = ledger.begin(wh, source_name, run_id=run_id, batch_id=batch_id, loaded_at=loaded_at)
    try:
        if isinstance(binding, SqlSourceBinding):
            from crm360 import sql_source

            result = sql_source.load_sql_source(wh, sql_source.from_binding(binding), attempt.batch_id,
                                                loaded_at=attempt.loaded_at, until=until,
                                                lookback_days=binding.lookback_days)
        else:
            result = _load_files(wh, Path(landing), binding, attempt, until, workers, threshold)
    except BaseException as exc:
        files = _abandon(wh, attempt, exc)
        error = _as_load_error(exc)
        if files and isinstance(error, IngestError) and "taken back out" not in str(error):
            error = IngestError(f"{error}; the {files} file(s) of batch {attempt.batch_id} loaded before it were "
                                "taken back out")
        raise error from (None if isinstance(exc, IngestError) else exc)
    ledger.finish(wh, attempt.batch_id, len(result.files_loaded), result.total_rows, result.replaced)
    result.adopted = attempt.adopted
    log.info("loaded %s as %s: %d files, %d skipped, %d replaced, rows %s, quarantined %s", source_name,
             attempt.batch_id, len(result.files_loaded), len(result.files_skipped), result.replaced, result.rows,
             result.quarantined)
    return result


def _abandon(wh: Warehouse, attempt: ledger.Attempt, exc: BaseException) -> int:
    """Take a failed attempt back out; returns how many of its files had been committed. If that
    fails too (the server is gone), the attempt stays unsettled: no build reads it, and the next
    attempt for the source unloads it."""
    try:
        with wh.connect() as conn:
            files = conn.execute("select count(*) from audit.load_files where batch_id = %s",
                                 (attempt.batch_id,)).fetchone()[0]
        ledger.unload(wh, [attempt.batch_id], _first_line(exc))
    except Exception as again:  # noqa: BLE001 - the original error is the one to report
        log.error("could not take %s back out (%s); the next load of %s will", attempt.batch_id,
                  _first_line(again), attempt.source)
        return 0
    return files


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else exc.__class__.__name__)[:500]


def _as_load_error(exc: BaseException) -> BaseException:
    """The error to raise for a failed attempt: retryable ones as they are (a retry may pass), the
    rest as an IngestError of one line (they name the file where _load_file knew it)."""
    if isinstance(exc, IngestError) or not isinstance(exc, Exception) or is_retryable(exc):
        return exc
    return IngestError(_first_line(exc))


def _load_files(wh: Warehouse, landing: Path, binding: FileSource, attempt: ledger.Attempt, until: date | None,
                workers: int, threshold: float) -> LoadResult:
    source_name, batch_id = binding.name, attempt.batch_id
    result = LoadResult(source=source_name, batch_id=batch_id)
    # a field may be as long as a record may (the csv module's own limit, 128 KiB, is a different rule)
    csv.field_size_limit(max(csv.field_size_limit(), max_record_bytes()))
    first_bad: tuple[str, _Outcome] | None = None
    bad_total = 0
    with ExitStack() as stack:
        conn = _loader_connection(wh, stack)
        known = dict(conn.execute(
            "select source_file, sha256 from audit.load_files where source = %s", (source_name,)
        ).fetchall())
        conn.commit()
        drops = list(discover(landing, binding, until))
        idle: queue.SimpleQueue[psycopg.Connection] = queue.SimpleQueue()
        idle.put(conn)
        for _ in range(min(workers, len(drops)) - 1):
            idle.put(_loader_connection(wh, stack))

        def load(drop: Drop) -> _Outcome | None:
            """The file's outcome, or None if it is loaded already with these bytes."""
            digest = sha256_of(drop)
            if known.get(drop.rel) == digest:
                return None
            worker = idle.get()
            try:
                return _load_file(worker, _FileLoad(source_name, drop, batch_id, attempt.loaded_at), digest)
            finally:
                idle.put(worker)

        pool = stack.enter_context(ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"load-{source_name}"))
        try:
            for drop, loaded in zip(drops, pool.map(load, drops), strict=True):  # in discovery order
                if loaded is None:
                    result.files_skipped.append(drop.rel)
                    continue
                result.files_loaded.append(drop.rel)
                result.replaced += loaded.replaced
                name = drop.table.name
                result.rows[name] = result.rows.get(name, 0) + loaded.rows
                if loaded.bad:
                    result.quarantined[name] = result.quarantined.get(name, 0) + len(loaded.bad)
                    bad_total += len(loaded.bad)
                    first_bad = first_bad or (drop.rel, loaded)
                result.drift += [f"{drop.rel}: {d}" for d in loaded.drift]
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # files already started finish or roll back
            raise
    if first_bad:
        _check_batch_threshold(result, bad_total, threshold, first_bad)
    return result


def _check_batch_threshold(result: LoadResult, bad: int, threshold: float, first: tuple[str, _Outcome]) -> None:
    total = result.total_rows + bad
    if bad / total <= threshold:
        log.warning("%s: %d malformed record(s) quarantined (%.2f%% of %d)", result.source, bad,
                    100 * bad / total, total)
        return
    rel, outcome = first
    raise IngestError(
        f"{rel}: {_where(outcome.bad[0])}: {outcome.bad[0][2]}; {bad} of {total} records of batch "
        f"{result.batch_id} malformed ({bad / total:.1%}, more than the {threshold:.1%} allowed by "
        "CRM360_MAX_BAD_ROW_FRACTION); the batch was taken back out, nothing of it stays loaded")


def _where(bad: tuple) -> str:
    line, record = bad[0], bad[1]
    return f"line {line}" if line is not None else f"record {record}"


@dataclass(frozen=True)
class _FileLoad:
    source: str
    drop: Drop
    batch_id: str
    loaded_at: datetime

    @property
    def rel(self) -> str:
        return self.drop.rel

    @property
    def contract(self) -> Contract:
        return self.drop.table.contract


@dataclass
class _Outcome:
    rows: int = 0
    replaced: bool = False  # the file replaced a version an earlier attempt loaded
    bad: list[tuple[int | None, int | None, str, str]] = field(default_factory=list)  # line, record, reason, raw
    drift: list[str] = field(default_factory=list)
    # JSON lines COPY took unchecked: SQL naming why a loaded record is no record at all (not an
    # object, a required field missing), taken out with the invalid values in one pass
    malformed: sql.Composable | None = None


def _loader_connection(wh: Warehouse, stack: ExitStack) -> psycopg.Connection:
    conn = stack.enter_context(wh.connect())
    # Each file commits with its ledger row, so a commit lost in a crash only means a file not yet
    # loaded, which the next run loads: waiting for every commit's WAL flush buys nothing.
    conn.execute("set synchronous_commit = off")
    conn.commit()
    return conn


def _load_file(conn: psycopg.Connection, job: _FileLoad, digest: str) -> _Outcome:
    target = sql.Identifier("raw", job.contract.table)
    rel = job.rel
    try:
        with conn.transaction():
            begin_file_load(conn, job.source, rel, job.batch_id, job.loaded_at)
            if isinstance(job.contract, CsvTable):
                first, _, header = _csv_header(job)
                drift = _new_columns(conn, job.contract, header)
            replaced = ledger.hold_replaced(conn, job.source, job.contract.table, rel, job.batch_id)
            conn.execute(sql.SQL("delete from {} where _source_file = %s").format(target), (rel,))
            conn.execute("delete from raw._quarantine where source_file = %s", (rel,))
            if isinstance(job.contract, CsvTable):
                outcome = _copy_csv(conn, job, target, first, header)
                outcome.drift = drift
            else:
                outcome, header = _copy_json(conn, job, target), None
            outcome.replaced = replaced
            moved = _invalid_values(conn, job, target, header, outcome.malformed)  # in raw and counted: taken out
            outcome.rows -= len(moved)
            outcome.bad += moved
            _check_file(job, outcome)
            if outcome.bad:
                _quarantine(conn, job, outcome.bad)
            if outcome.drift:
                _record_drift(conn, job, outcome.drift)
            summarize_source_files(conn, job.contract.table)
            conn.execute(
                """insert into audit.load_files
                       (source, source_file, sha256, row_count, batch_id, loaded_at)
                   values (%s, %s, %s, %s, %s, %s)
                   on conflict (source, source_file) do update set
                       sha256 = excluded.sha256, row_count = excluded.row_count,
                       batch_id = excluded.batch_id, loaded_at = excluded.loaded_at""",
                (job.source, rel, digest, outcome.rows, job.batch_id, job.loaded_at),
            )
    except (EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        if job.drop.compression is None:  # reading a plain file failed: the storage's problem, worth a retry
            raise
        raise IngestError(f"{rel}: the {job.drop.compression} file is truncated or corrupt ({exc}); nothing "
                          "from it was loaded") from None
    except psycopg.OperationalError as exc:
        if not is_retryable(exc):  # a resource limit (a record nested too deep for the server, ...)
            raise IngestError(f"{rel}: the database cannot take the file ({exc.__class__.__name__}: "
                              f"{_first_line(exc)}); nothing from it was loaded") from exc
        # the server or the connection failed (a restart, a lost network), not the file: this must
        # stay a retryable error, unlike IngestError, which fails an Airflow task without retries
        exc.add_note(f"{rel}: the load was cut off ({exc.__class__.__name__}); nothing from the file was "
                     "committed, a retry loads it")
        raise
    except psycopg.Error as exc:
        detail = (exc.diag.context or "").strip().replace("\n", " ") if exc.diag else ""
        raise IngestError(f"{rel}: the database rejected the file ({exc.__class__.__name__}: "
                          f"{str(exc).strip()}{'; ' + detail if detail else ''}); nothing from "
                          "it was loaded") from exc
    except (IngestError, KeyboardInterrupt):
        raise
    except csv.Error as exc:
        raise IngestError(f"{rel}: unreadable CSV ({exc}); nothing from it was loaded") from None
    except RecursionError:
        raise IngestError(f"{rel}: a record is nested too deeply to be read; nothing from the file was "
                          "loaded") from None
    except MemoryError:
        raise IngestError(f"{rel}: a record is too large to be read; nothing from the file was loaded") from None
    except Exception as exc:  # noqa: BLE001 - named and reported: the attempt is taken back out by the caller
        if is_retryable(exc):
            raise
        raise IngestError(f"{rel}: {exc.__class__.__name__}: {_first_line(exc)}; nothing from the file was "
                          "loaded") from exc
    return outcome


def _check_file(job: _FileLoad, outcome: _Outcome) -> None:
    """A file mostly made of malformed records is the wrong file, whatever the rest of the batch holds."""
    total = outcome.rows + len(outcome.bad)
    if outcome.bad and len(outcome.bad) / total > UNREADABLE_FRACTION:
        first = outcome.bad[0]
        raise IngestError(
            f"{job.rel}: {_where(first)}: {first[2]}; {len(outcome.bad)} of {total} records malformed "
            f"({len(outcome.bad) / total:.1%}); nothing from the file was loaded")


def _invalid_values(conn: psycopg.Connection, job: _FileLoad, target: sql.Identifier,
                    header: list[str] | None, malformed: sql.Composable | None = None) -> list[tuple]:
    """Take the file's records whose values break the contract (bad dates, negative
    quantities, ...) out of the raw table; return them for the quarantine. With
    ``malformed`` (JSON lines loaded unchecked), the records that are no records at all
    go in the same pass, with that reason first.

    Done in SQL on the rows COPY just wrote, so clean files keep COPY's speed; one pass
    over the file's rows for both kinds of bad record."""
    contract = job.contract
    if not contract.types and not contract.checks and malformed is None:
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
        if type_name not in _MOMENT_TYPES:
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
    found = [(line, record, reason, raw) for line, record, raw, reason in _locate(job, header, cols, by_values)]
    # a record the second read cannot place still goes to the quarantine, only without its line
    unplaced = [(None, None, reason, ",".join(key)) for key, reasons in by_values.items() for reason in reasons]
    return found + unplaced


_MOMENT_TYPES = {"timestamptz", "timestamp", "date"}


def _locate(job: _FileLoad, header: list[str], cols: list[str], wanted: dict[tuple, list[str]]) -> Iterator[tuple]:
    """Line and record numbers of the CSV records SQL validation rejected (read again,
    only for files that had any). ``header`` is the file's header as crm360 columns."""
    with job.drop.open() as fh:
        reader = csv.reader(_text_lines(fh, job.rel, "replace"), delimiter=job.drop.table.delimiter)
        next(reader)
        index = [header.index(c) if c in header else None for c in cols]
        for record, fields in enumerate(reader, start=1):
            key = tuple(fields[i] if i is not None and i < len(fields) else "" for i in index)
            if key in wanted and wanted[key]:
                yield reader.line_num, record, job.drop.table.delimiter.join(fields), wanted[key].pop()


def _quarantine(conn: psycopg.Connection, job: _FileLoad, bad: list) -> None:
    stmt = """copy raw._quarantine (source, table_name, source_file, line_number, record_number, reason,
                                    raw_record, _batch_id, _loaded_at) from stdin"""
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for line, record, reason, raw in bad:
            # text holds neither NUL nor lone surrogates: those are shown escaped (\x00, \ud83e)
            raw = raw[:10_000].replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
            copy.write_row((job.source, job.contract.table, job.rel, line, record, reason, raw,
                            job.batch_id, job.loaded_at))


def _record_drift(conn: psycopg.Connection, job: _FileLoad, columns: list[str]) -> None:
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


def _too_long(rel: str, line: int, limit: int) -> IngestError:
    return IngestError(f"{rel}: line {line}: longer than {limit} bytes ({MAX_RECORD_ENV}): not a record but a broken "
                       "export (missing line ends, or binary data); nothing from the file was loaded")


def _lines(fh, rel: str, limit: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(line number, line with its line end) of a line-delimited file, read in chunks: a
    line longer than ``limit`` bytes fails the file before more than that is held in memory."""
    limit = limit or max_record_bytes()
    number, pending = 0, b""
    while chunk := fh.read(COPY_CHUNK):
        lines = (pending + chunk if pending else chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            number += 1
            if len(line) > limit:
                raise _too_long(rel, number, limit)
            yield number, line + b"\n"
        if len(pending) > limit:
            raise _too_long(rel, number + 1, limit)
    if pending:
        yield number + 1, pending


def _text_lines(fh, rel: str, errors: str) -> Iterator[str]:
    """The lines of a UTF-8 file as text (a byte-order mark dropped), for the csv module."""
    for number, line in _lines(fh, rel):
        text = line.decode("utf-8", errors)
        yield text[1:] if number == 1 and text.startswith("\ufeff") else text


class _LineLengths:
    """Follows the line lengths of a stream handed on in chunks, without splitting it."""

    def __init__(self, rel: str, limit: int) -> None:
        self.rel, self.limit, self.line, self.length = rel, limit, 1, 0

    def feed(self, chunk: bytes) -> None:
        end = chunk.find(b"\n")
        if end < 0:
            self.length += len(chunk)
            self.check()
            return
        self.length += end
        self.check()
        if self.limit < len(chunk):  # a line inside the chunk could be too long as well
            start = end + 1
            while (end := chunk.find(b"\n", start)) >= 0:
                self.line, self.length = self.line + 1, end - start
                self.check()
                start = end + 1
            self.line, self.length = self.line + 1, len(chunk) - start
        else:
            self.line += chunk.count(b"\n")
            self.length = len(chunk) - chunk.rfind(b"\n") - 1
        self.check()

    def check(self) -> None:
        if self.length > self.limit:
            raise _too_long(self.rel, self.line, self.limit)


def _csv_header(job: _FileLoad) -> tuple[bytes, list[str], list[str]]:
    """(first line, header as in the file, header as crm360 columns) of a CSV drop."""
    table, rel = job.drop.table, job.rel
    with job.drop.open() as fh:
        first = next((line for _, line in _lines(fh, rel)), b"")
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
    missing = [c for c in contract.required if c not in header]
    if missing:
        renamed = {c: table.columns[c] for c in missing if c in table.columns}
        hint = "".join(f" ({c} is read from column {e!r})" for c, e in renamed.items())
        raise IngestError(f"{rel}: line 1: required column(s) missing: {', '.join(missing)}{hint}")
    if len(set(header)) != len(header) or "" in header or any(h.startswith("_") for h in header):
        raise IngestError(f"{rel}: line 1: column names must be unique, non-empty and not start with '_'")
    return first, names, header


def _copy_csv(conn: psycopg.Connection, job: _FileLoad, target: sql.Identifier, first: bytes,
              header: list[str]) -> _Outcome:
    """COPY the file as it is when its columns are the contract's; else, and when COPY refuses it,
    row by row, with the columns the contract does not know kept in the row's ``_extra``."""
    rel, delimiter = job.rel, job.drop.table.delimiter
    outcome = _Outcome()
    known = [i for i, c in enumerate(header) if c in job.contract.columns]
    foreign = [i for i, c in enumerate(header) if c not in job.contract.columns]
    if not foreign:
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in header)
        fast = sql.SQL("copy {} ({}) from stdin with (format csv, header true, delimiter {}, "
                       "encoding 'UTF8')").format(target, columns, sql.Literal(delimiter))
        try:
            with conn.transaction(), conn.cursor() as cur:  # a savepoint: the slow path can follow
                with cur.copy(fast) as copy, job.drop.open() as fh:
                    if first.startswith(b"\xef\xbb\xbf"):  # COPY would read the BOM as part of the first name
                        fh.seek(3)
                    lengths = _LineLengths(rel, max_record_bytes())
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
        for line, record, fields, problem in _csv_records(job, len(header)):
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


def _csv_records(job: _FileLoad, width: int) -> Iterator[tuple[int, int, object, str | None]]:
    """(line, record number, fields or raw text, problem) for each data record of a CSV file."""
    delimiter = job.drop.table.delimiter
    with job.drop.open() as fh:
        reader = csv.reader(_text_lines(fh, job.rel, "surrogateescape"), delimiter=delimiter)
        yield from _csv_checked(job, reader, width)


def _csv_checked(job: _FileLoad, reader, width: int) -> Iterator[tuple[int, int, object, str | None]]:
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


def _new_columns(conn: psycopg.Connection, table: CsvTable, header: list[str]) -> list[str]:
    """Columns of the file the contract does not know and the drift log has not seen yet. Their
    values are kept in the rows' ``_extra`` (a load changes no table's columns)."""
    foreign = [c for c in header if c not in table.columns]
    if not foreign:
        return []
    seen = _drift_seen(conn, table)
    return [c for c in foreign if c not in seen]


def _drift_seen(conn: psycopg.Connection, table: CsvTable) -> set[str]:
    return {r[0] for r in conn.execute(
        "select column_name from audit.schema_drift where table_name = %s", (table.table,))}


def _json_records(job: _FileLoad) -> Iterator[tuple[int | None, int, str, str | None, list[str]]]:
    """(line, record number, text, problem, unknown fields) for every record of a JSON source file.

    Records are renamed to crm360's field names (``columns`` in sources.yml) before
    they are checked and stored."""
    table, rel = job.drop.table, job.rel
    contract: JsonTable = job.contract  # type: ignore[assignment]
    rename = table.to_contract()

    def check(record: object) -> tuple[object, str | None, list[str]]:
        if not isinstance(record, dict):
            return record, f"expected a JSON object, got {_JSON_TYPES.get(type(record), 'a value')}", []
        if rename:
            record = {rename.get(k, k): v for k, v in record.items()}
        absent = [k for k in contract.required if record.get(k) in (None, "")]
        if absent:
            return record, f"required field(s) missing: {', '.join(absent)}", []
        for k in contract.required:
            if isinstance(record[k], (dict, list, bool)):
                return record, f"{k}: expected a string or number, got {_JSON_TYPES[type(record[k])]}", []
        unstorable = _unstorable(record)
        if unstorable:
            return record, unstorable, []
        unknown = [k for k in record if contract.known and k not in contract.known]
        return record, None, unknown

    if table.format == "jsonl":
        with job.drop.open() as fh:
            for number, raw in _lines(fh, rel):
                raw = _without_bom(raw, number)
                if not raw.strip():
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    yield number, number, raw.decode("utf-8", "backslashreplace"), "not valid UTF-8", []
                    continue
                try:
                    record = _parse_json(line)
                except json.JSONDecodeError as exc:
                    yield number, number, line.rstrip("\n"), f"invalid JSON ({exc.msg})", []
                    continue
                except RecursionError:
                    yield number, number, line.rstrip("\n")[:10_000], "a record nested too deeply to be read", []
                    continue
                record, problem, unknown = check(record)
                text = _dump(record) if rename else line.rstrip("\n")
                yield number, number, text, problem, unknown
        return
    limit = max_document_bytes()
    with job.drop.open() as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise IngestError(f"{rel}: the JSON document is larger than {limit} bytes ({MAX_DOCUMENT_ENV}); split the "
                          "export into smaller files or raise the limit; nothing from it was loaded")
    try:
        document = _parse_json(data.decode("utf-8-sig"))  # a byte-order mark before the document is no content
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
        yield None, number, _dump(record), problem, unknown


class _NotJson:
    """NaN, Infinity or -Infinity where a JSON number should be: Python's parser takes them, JSON
    (and PostgreSQL's jsonb) does not. The record holding one is quarantined, the rest of its file loads."""

    def __init__(self, name: str) -> None:
        self.name = name


def _parse_json(text: str):
    return json.loads(text, parse_constant=_NotJson)


def _dump(record: object) -> str:
    """A record as JSON text again (a NaN written as it came, for the quarantine)."""
    return json.dumps(record, ensure_ascii=False, default=lambda o: o.name if isinstance(o, _NotJson) else str(o))


def _without_bom(line: bytes, number: int) -> bytes:
    """A JSON-lines file's first line without a UTF-8 byte-order mark (editors on Windows write one)."""
    return line[3:] if number == 1 and line.startswith(b"\xef\xbb\xbf") else line


_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}
_SURROGATE = re.compile("[\ud800-\udfff]")


def _unstorable(value: object, where: str = "") -> str | None:
    """Why PostgreSQL cannot store a parsed JSON value (a NUL character or a lone UTF-16
    surrogate in a string or key: JSON allows both, jsonb and text do not), or None."""
    if isinstance(value, _NotJson):
        return f"{where or 'a value'}: {value.name} is not a JSON number"
    if isinstance(value, str):
        if "\x00" in value:
            return f"{where or 'a value'}: contains a NUL character (\\u0000), which PostgreSQL cannot store"
        if _SURROGATE.search(value):
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
        problem = _unstorable(key, path) if isinstance(value, dict) else None
        problem = problem or _unstorable(item, path)
        if problem:
            return problem
    return None


COPY_BATCH_LINES = 20_000


def _copy_json(conn: psycopg.Connection, job: _FileLoad, target: sql.Identifier) -> _Outcome:
    """JSON lines stream to COPY as they are when the file is clean; else (or for JSON
    documents, or renamed fields) each record is parsed and checked in Python."""
    if job.drop.table.format == "jsonl" and not job.drop.table.to_contract():
        fast = _copy_jsonl_fast(conn, job, target)
        if fast is not None:
            return fast
    return _copy_json_checked(conn, job, target)


def _copy_jsonl_fast(conn: psycopg.Connection, job: _FileLoad, target: sql.Identifier) -> _Outcome | None:
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
                for number, raw in _lines(fh, job.rel):
                    line = _without_bom(raw, number).rstrip(b"\r\n")
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
    outcome = _Outcome(rows=rows, malformed=problem)  # taken out by _invalid_values, in its one pass
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


def _copy_json_checked(conn: psycopg.Connection, job: _FileLoad, target: sql.Identifier) -> _Outcome:
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
