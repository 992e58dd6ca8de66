"""Load a source's new or changed drops into ``raw`` with PostgreSQL COPY, as one attempt.

What each source feeds is crm360's contract (``crm360.ingest.sources``); where its records come
from and how the export's columns are named is the deployment's ``sources.yml``. Files are found
and read by ``drops`` (any fsspec location), CSV and JSON by ``csvfile`` and ``jsonfile``, their
values checked by ``validate``; SQL sources by ``sql``. The attempt and its ledger: ``ledger``.

A file is the unit of work: one transaction removes the file's earlier rows (kept aside until the
attempt is gated, see ``ledger``), copies it, takes its bad records out to the quarantine and
records the file and its checksum in ``audit.load_files``. Re-running a load never duplicates
rows, a file whose bytes have not changed is skipped, and a failure leaves nothing partial.
Files load ``CRM360_LOAD_WORKERS`` at a time (default: 2, or 1 on one CPU), each on its own
connection: one COPY keeps one server process busy, and the checks after it run on the server.
Whatever stops the attempt takes it back out and names the file."""

from __future__ import annotations

import csv
import logging
import lzma
import queue
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import date, datetime
from pathlib import Path

import psycopg
from psycopg import sql

from crm360.core.errors import is_retryable
from crm360.core.schema import require_current
from crm360.core.warehouse import Warehouse
from crm360.ingest import batch, csvfile, currency, drops, ledger, validate
from crm360.ingest.batch import IngestError, LoadResult, Outcome, first_line, max_record_bytes, where
from crm360.ingest.drops import Drop, FileLoad
from crm360.ingest.sources import (
    CONTRACT,
    CsvTable,
    FileSource,
    SourceBinding,
    SqlSourceBinding,
)

log = logging.getLogger(__name__)






def load_source(wh: Warehouse, landing: Path, source_name: str, batch_id: str | None = None,
                loaded_at: datetime | None = None, until: date | None = None,
                config: dict[str, SourceBinding] | None = None, run_id: str | None = None) -> LoadResult:
    """Load every new or changed file (or cursor window) of one source, dated before ``until`` if
    given, as one attempt (crm360.ingest.ledger): ``batch_id`` names it, else it is the next attempt of
    ``run_id``. Safe to re-run: what is loaded is loaded exactly once.

    Whatever stops the attempt (a bad file, too many bad records, a file the readers choke on,
    a lost connection) takes back out exactly what it loaded and puts back what it replaced; the
    error names the file, and the line where known. Errors no retry can mend are IngestError."""
    if source_name not in CONTRACT:
        raise IngestError(f"unknown source {source_name!r}; known: {', '.join(CONTRACT)}")
    binding = (config or drops.bindings())[source_name]
    threshold = batch.max_bad_fraction()
    workers = batch.load_workers()
    require_current(wh)  # the raw tables and the ledger are the migrations' (crm360 migrate)
    attempt = ledger.begin(wh, source_name, run_id=run_id, batch_id=batch_id, loaded_at=loaded_at)
    try:
        rules = _currency_rules(wh, source_name)  # SQL sources too: their orders need the rates in staging
        if isinstance(binding, SqlSourceBinding):
            from crm360.ingest import sql as sql_source

            result = sql_source.load_sql_source(wh, sql_source.from_binding(binding), attempt.batch_id,
                                                loaded_at=attempt.loaded_at, until=until,
                                                lookback_days=binding.lookback_days)
        else:
            result = _load_files(wh, Path(landing), binding, attempt, until, workers, threshold, rules)
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
        ledger.unload(wh, [attempt.batch_id], first_line(exc))
    except Exception as again:  # noqa: BLE001 - the original error is the one to report
        log.error("could not take %s back out (%s); the next load of %s will", attempt.batch_id,
                  first_line(again), attempt.source)
        return 0
    return files


def _as_load_error(exc: BaseException) -> BaseException:
    """The error to raise for a failed attempt: retryable ones as they are (a retry may pass), the
    rest as an IngestError of one line (they name the file where _load_file knew it)."""
    if isinstance(exc, IngestError) or not isinstance(exc, Exception) or is_retryable(exc):
        return exc
    return IngestError(first_line(exc))


def _currency_rules(wh: Warehouse, source_name: str) -> dict[str, tuple]:
    """For the source with orders: the deployment's rates, checked and stored in ``raw.currency_rates``
    (a bad rates file fails the load before any file), and the rule that quarantines an order in a
    currency without a rate on its day; per raw table. A SQL source's rows are not quarantined: an
    order there without a rate fails the build's test on int_orders_attributed.rate_to_reporting."""
    if source_name != ORDERS[0]:
        return {}
    config = currency.configured()
    with wh.connect() as conn, conn.transaction():
        stored = currency.store_rates(conn, config, str(config.rates_file or ""))
    if stored:
        log.info("%s: %d exchange rate(s) to %s stored", config.rates_file, stored, config.reporting)
    rule = currency.missing_rate_rule(config.reporting, sql.Identifier("currency"), sql.Identifier("ordered_at"))
    return {ORDERS[1]: (rule,)}


ORDERS = ("sales", "sales_orders")  # the source and raw table whose rows carry a currency


def _load_files(wh: Warehouse, landing: Path, binding: FileSource, attempt: ledger.Attempt, until: date | None,
                workers: int, threshold: float, rules: dict[str, tuple] | None = None) -> LoadResult:
    source_name, batch_id = binding.name, attempt.batch_id
    result = LoadResult(source=source_name, batch_id=batch_id)
    # a field may be as long as a record may (the csv module's own limit, 128 KiB, is a different rule)
    csv.field_size_limit(max(csv.field_size_limit(), max_record_bytes()))
    first_bad: tuple[str, Outcome] | None = None
    bad_total = 0
    with ExitStack() as stack:
        conn = _loader_connection(wh, stack)
        known = dict(conn.execute(
            "select source_file, sha256 from audit.load_files where source = %s", (source_name,)
        ).fetchall())
        conn.commit()
        found = list(drops.discover(landing, binding, until))
        idle: queue.SimpleQueue[psycopg.Connection] = queue.SimpleQueue()
        idle.put(conn)
        for _ in range(min(workers, len(found)) - 1):
            idle.put(_loader_connection(wh, stack))

        def load(drop: Drop) -> Outcome | None:
            """The file's outcome, or None if it is loaded already with these bytes."""
            digest = drops.sha256_of(drop)
            if known.get(drop.rel) == digest:
                return None
            worker = idle.get()
            try:
                job = FileLoad(source_name, drop, batch_id, attempt.loaded_at)
                return _load_file(worker, job, digest, (rules or {}).get(job.contract.table, ()))
            finally:
                idle.put(worker)

        pool = stack.enter_context(ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"load-{source_name}"))
        try:
            for drop, loaded in zip(found, pool.map(load, found), strict=True):  # in discovery order
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


def _check_batch_threshold(result: LoadResult, bad: int, threshold: float, first: tuple[str, Outcome]) -> None:
    total = result.total_rows + bad
    if bad / total <= threshold:
        log.warning("%s: %d malformed record(s) quarantined (%.2f%% of %d)", result.source, bad,
                    100 * bad / total, total)
        return
    rel, outcome = first
    raise IngestError(
        f"{rel}: {where(outcome.bad[0])}: {outcome.bad[0][2]}; {bad} of {total} records of batch "
        f"{result.batch_id} malformed ({bad / total:.1%}, more than the {threshold:.1%} allowed by "
        "CRM360_MAX_BAD_ROW_FRACTION); the batch was taken back out, nothing of it stays loaded")


def _loader_connection(wh: Warehouse, stack: ExitStack) -> psycopg.Connection:
    conn = stack.enter_context(wh.connect())
    # Each file commits with its ledger row, so a commit lost in a crash only means a file not yet
    # loaded, which the next run loads: waiting for every commit's WAL flush buys nothing.
    conn.execute("set synchronous_commit = off")
    conn.commit()
    return conn


def _load_file(conn: psycopg.Connection, job: FileLoad, digest: str, rules: tuple = ()) -> Outcome:
    target = sql.Identifier("raw", job.contract.table)
    rel = job.rel
    try:
        with conn.transaction():
            batch.begin_file_load(conn, job.source, rel, job.batch_id, job.loaded_at)
            if isinstance(job.contract, CsvTable):
                first, _, header = csvfile.header(job)
                drift = csvfile.new_columns(conn, job.contract, header)
            replaced = ledger.hold_replaced(conn, job.source, job.contract.table, rel, job.batch_id)
            conn.execute(sql.SQL("delete from {} where _source_file = %s").format(target), (rel,))
            conn.execute("delete from raw._quarantine where source_file = %s", (rel,))
            if isinstance(job.contract, CsvTable):
                outcome = validate.copy_checked(conn, job, target, first, header, rules)
                outcome.drift = drift
            else:
                outcome = validate.copy_checked(conn, job, target, rules=rules)
            outcome.replaced = replaced
            if outcome.bad:
                validate.quarantine(conn, job, outcome.bad)
            if outcome.drift:
                validate.record_drift(conn, job, outcome.drift)
            batch.summarize_source_files(conn, job.contract.table)
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
                              f"{first_line(exc)}); nothing from it was loaded") from exc
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
        raise IngestError(f"{rel}: {exc.__class__.__name__}: {first_line(exc)}; nothing from the file was "
                          "loaded") from exc
    return outcome
