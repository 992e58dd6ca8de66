"""Load throughput of crm360's loaders against psql \\copy, pandas and dlt on the same files, in one run.

    .venv/bin/python bench/load_throughput.py --preset small [--repeat 3] [--sources sales,web,service]
    .venv/bin/python bench/load_throughput.py --preset medium --landing DIR --days 7

Each repetition uses a fresh database and loads the same drop files four ways, timing each source:

* crm360: ``crm360.ingest.loader.load_source`` per source into ``raw.*``;
* psql \\copy: one psql process per source runs a generated script, one ``\\copy`` per file, into
  ``bench_copy.*`` tables created ``like raw.* including defaults`` (the meta columns fill from the
  same ``crm360.*`` settings). JSON lines go in one per row, into a text column (``--jsonl-into
  jsonb``: into ``record jsonb``). The service tickets (one JSON document per file) are not loaded by psql;
* pandas: ``read_csv(...).to_sql(method="multi", chunksize=10_000)`` into ``bench_pandas.*``, sales CSVs only;
* dlt: one ``pipeline.run`` per source (extract, normalize, load) of dlt's filesystem readers into the
  ``bench_dlt`` dataset: CSVs with ``read_csv`` as text, JSON lines with ``read_jsonl``, the tickets of
  each service document as records. Needs ``make bench-deps``; skipped with a message when missing.

The files are found where crm360.synthetic.generate writes them (the layout of the default sources.yml), and
the run checks that crm360 loaded exactly those files. Prints rows, median seconds and rows/s per
source and method, the peak memory (RSS) of each load, crm360's rows/s as a share of psql's (target:
at least 70 %), and checks that the
methods' row counts agree, allowing for the records crm360 quarantined. Uses the embedded warehouse
(a throwaway server under a temporary directory) unless CRM360_WAREHOUSE_URL is set; each database
is dropped afterwards. Exits 1 on errors and on row count mismatches, never on a missed target.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import multiprocessing
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from crm360 import ingest
from crm360.core import schema, warehouse
from crm360.core.settings import Settings, get_settings
from crm360.synthetic.generate import PRESETS, GeneratorConfig, generate

CRM360, CRM360_ONE, PSQL, PANDAS, DLT = "crm360", "crm360 1 conn", "psql \\copy", "pandas to_sql", "dlt"
METHODS = (CRM360, CRM360_ONE, PSQL, PANDAS, DLT)
DLT_DATASET = "bench_dlt"
DLT_FORMATS = ("insert_values", "csv")  # what dlt's postgres destination loads from: INSERT statements or COPY
TARGET_SHARE = 0.70  # the target: crm360 at least 70 % of psql \copy's rows/s
PANDAS_CHUNK = 10_000
# control characters json.dumps always escapes: as CSV quote and delimiter they never occur in a JSON line
JSONL_COPY_OPTIONS = "format csv, quote e'\\x01', delimiter e'\\x02', encoding 'UTF8'"
CSV_COPY_OPTIONS = "format csv, header true, encoding 'UTF8'"


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class FileSet:
    """One kind of drop: where crm360.synthetic.generate writes it (the default sources.yml) and its raw table."""

    source: str
    table: str  # raw.<table>, and bench_copy.<table> / bench_pandas.<table>
    pattern: str  # glob under the landing folder
    fmt: str  # csv | jsonl | json (one document holding a list of records)


FILE_SETS = (
    FileSet("sales", "sales_products", "sales/*/products.csv", "csv"),
    FileSet("sales", "sales_customers", "sales/*/customers.csv", "csv"),
    FileSet("sales", "sales_orders", "sales/*/orders.csv", "csv"),
    FileSet("sales", "sales_order_lines", "sales/*/order_lines.csv", "csv"),
    FileSet("service", "service_tickets", "service/tickets_*.json", "json"),
    FileSet("web", "web_events", "web/events_*.jsonl", "jsonl"),
)
SOURCE_NAMES = tuple(dict.fromkeys(f.source for f in FILE_SETS))
DAY_IN_PATH = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Drops:
    """The files of each benchmarked source under one landing tree, in name (that is, date) order."""

    landing: Path
    files: dict[str, list[tuple[FileSet, Path]]]

    def paths(self, source: str) -> list[Path]:
        return [path for _, path in self.files[source]]

    def rel(self, path: Path) -> str:
        return path.relative_to(self.landing).as_posix()

    def bytes(self, source: str) -> int:
        return sum(path.stat().st_size for path in self.paths(source))

    def tables(self, source: str) -> list[FileSet]:
        return [f for f in FILE_SETS if f.source == source]


def find_drops(landing: Path, sources: list[str]) -> Drops:
    """Every drop file of ``sources`` under ``landing``."""
    return Drops(landing, {s: [(f, path) for f in FILE_SETS if f.source == s
                               for path in sorted(landing.glob(f.pattern)) if path.is_file()]
                           for s in sources})


def last_days(drops: Drops, days: int, dest: Path) -> Drops:
    """A landing tree under ``dest`` holding symlinks to the drops of the last ``days`` days only."""
    dated = [(path, DAY_IN_PATH.search(drops.rel(path))) for s in drops.files for path in drops.paths(s)]
    keep = set(sorted({day.group() for _, day in dated if day})[-days:])
    for path, day in dated:
        if day and day.group() in keep:
            link = dest / drops.rel(path)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path.resolve())
    return find_drops(dest, list(drops.files))


def warm_page_cache(drops: Drops) -> None:
    """Read every file once, so the first method timed does not pay for cold reads."""
    for source in drops.files:
        for path in drops.paths(source):
            with open(path, "rb") as fh:
                while fh.read(1 << 20):
                    pass


def csv_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return [name.strip() for name in next(csv.reader(fh))]


# --------------------------------------------------------------------------- timing


def timed(fn, *args, **kwargs) -> tuple[object, float]:
    """The one place that times things: (result, wall-clock seconds) of ``fn(*args, **kwargs)``."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


@dataclass(frozen=True)
class Step:
    """One timed load, run in a process of its own: what it returned, its seconds and its peak memory."""

    value: object
    seconds: float
    peak_rss: int  # bytes: the kernel's high-water mark of the worker's resident memory


def peak_rss_of(pid: int | str) -> int | None:
    """The kernel's high-water mark of a process's resident memory (VmHWM), in bytes; None once it ended.

    VmHWM starts afresh when a process execs, unlike getrusage's ru_maxrss, which keeps the peak of
    the memory a child was forked with: a worker spawned by a big parent would be charged the parent's.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else None


def _step_in_worker(fn_name: str, args: tuple) -> tuple[object, float, int]:
    """Runs in the spawned worker: the step, then the worker's peak RSS."""
    value, seconds = globals()[fn_name](*args)
    return value, seconds, peak_rss_of("self") or 0


def run_step(fn, *args) -> Step:
    """``fn(*args)`` -> (value, seconds) in a fresh spawned process, so each load's peak memory is its own.

    The step function does its own timing, after its imports and connections. The load runs in the
    worker (crm360, pandas, dlt: dlt's load threads too), so the worker's peak RSS, from the kernel and
    not sampled, is the load's, the interpreter and the benchmark's imports included. psql runs as a
    process of its own: its step returns that process's peak (``run_psql``).
    """
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        value, seconds, peak = pool.apply(_step_in_worker, (fn.__name__, args))
    return Step(value, seconds, peak)


def step_nothing() -> tuple[None, float]:
    """A worker that loads nothing: the baseline every in-process peak includes."""
    return None, 0.0


# --------------------------------------------------------------------------- warehouse


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def create_bench_tables(wh: warehouse.Warehouse, sources: list[str], jsonl_into: str) -> None:
    """``bench_copy.*`` and ``bench_pandas.*`` shaped like ``raw.*`` (raw must exist).

    JSON lines go to psql as one value per line: into a ``line text`` column, or with
    ``jsonl_into == "jsonb"`` into ``record jsonb`` (the server parses the JSON, as it does for crm360).
    """
    with wh.connect(autocommit=True) as conn:
        for schema in ("bench_copy", "bench_pandas"):
            conn.execute(f"create schema if not exists {schema}")
        for table in (f for f in FILE_SETS if f.source in sources and f.fmt != "json"):
            name = quote_ident(table.table)
            conn.execute(f"create table bench_copy.{name} (like raw.{name} including defaults)")
            if table.fmt == "csv":
                conn.execute(f"create table bench_pandas.{name} (like raw.{name} including defaults)")
            elif jsonl_into == "text":
                conn.execute(f"alter table bench_copy.{name} drop column _record_number, "
                             "drop column record, add column line text")
            else:
                conn.execute(f"alter table bench_copy.{name} alter column _record_number drop not null")


def settle(wh: warehouse.Warehouse) -> None:
    """Checkpoint before a timed load, so no method pays for the previous one's dirty pages."""
    with wh.connect(autocommit=True) as conn:
        try:
            conn.execute("checkpoint")
        except psycopg.errors.InsufficientPrivilege:
            pass


def count_rows(wh: warehouse.Warehouse, schema: str, table: str) -> int:
    with wh.connect() as conn:
        return conn.execute(f"select count(*) from {schema}.{quote_ident(table)}").fetchone()[0]


def count_rows_if_any(wh: warehouse.Warehouse, schema: str, table: str) -> int:
    """Rows in a table some loader may not have created (dlt creates none for a file set without records)."""
    with wh.connect() as conn:
        exists = conn.execute("select to_regclass(%s) is not null",
                              (f"{schema}.{quote_ident(table)}",)).fetchone()[0]
    return count_rows(wh, schema, table) if exists else 0


def quarantined(wh: warehouse.Warehouse) -> dict[str, int]:
    """Records crm360 set aside as malformed, per raw table."""
    with wh.connect() as conn:
        return dict(conn.execute("select table_name, count(*) from raw._quarantine group by 1").fetchall())


def server_version(wh: warehouse.Warehouse) -> str:
    with wh.connect() as conn:
        return conn.execute("show server_version").fetchone()[0]


# --------------------------------------------------------------------------- the four loaders


def load_crm360(wh: warehouse.Warehouse, drops: Drops, source: str, batch_id: str,
                loaded_at: datetime) -> ingest.LoadResult:
    return ingest.load_source(wh, drops.landing, source, batch_id, loaded_at=loaded_at)


def find_psql() -> str:
    """pgserver's own psql (same major version as the embedded server), else psql on PATH."""
    spec = importlib.util.find_spec("pgserver")  # located, not imported: importing it starts warning
    for folder in (spec.submodule_search_locations or []) if spec else []:
        bundled = Path(folder) / "pginstall" / "bin" / "psql"
        if bundled.is_file():
            return str(bundled)
    found = shutil.which("psql")
    if not found:
        raise SystemExit("error: no psql found (neither in the pgserver package nor on PATH)")
    return found


def psql_env(wh: warehouse.Warehouse) -> dict[str, str]:
    """libpq environment for psql: keeps the password off the command line."""
    env = {**os.environ, "PGHOST": wh.host, "PGPORT": str(wh.port), "PGUSER": wh.user,
           "PGDATABASE": wh.dbname, "PGCLIENTENCODING": "UTF8"}
    if wh.password:
        env["PGPASSWORD"] = wh.password
    return env


def psql_script(drops: Drops, source: str, batch_id: str, loaded_at: datetime, jsonl_into: str) -> str | None:
    """psql commands that \\copy every file of ``source``; None if psql has no comparable load for it."""
    lines = [f"select set_config('crm360.batch_id', {quote_literal(batch_id)}, false);",
             f"select set_config('crm360.loaded_at', {quote_literal(loaded_at.isoformat())}, false);"]
    for table, path in drops.files[source]:
        if table.fmt == "json":
            return None  # a whole JSON document per file: \copy has no record-per-row equivalent
        lines.append(f"select set_config('crm360.source_file', {quote_literal(drops.rel(path))}, false);")
        if table.fmt == "csv":
            columns, options = ", ".join(quote_ident(c) for c in csv_header(path)), CSV_COPY_OPTIONS
        else:
            columns, options = ("line" if jsonl_into == "text" else "record"), JSONL_COPY_OPTIONS
        lines.append(f"\\copy bench_copy.{quote_ident(table.table)} ({columns}) "
                     f"from {quote_literal(str(path))} with ({options})")
    return "\n".join(lines) + "\n"


def run_psql(psql: str, env: dict[str, str], script: Path) -> int:
    """Runs the script; returns psql's peak RSS in bytes.

    The peak is psql's VmHWM (``peak_rss_of``), read every 10 ms while psql runs: it only grows, so the
    last reading misses at most the last 10 ms.
    """
    with tempfile.TemporaryFile() as err, subprocess.Popen(
            [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script)],
            env=env, stdout=subprocess.DEVNULL, stderr=err) as proc:
        peak = 0
        while proc.poll() is None:
            peak = max(peak, peak_rss_of(proc.pid) or 0)  # None: ended (or a zombie) since poll
            try:
                proc.wait(0.01)
            except subprocess.TimeoutExpired:
                pass
        if proc.returncode:
            err.seek(0)
            raise RuntimeError(f"psql failed on {script.name}: {err.read().decode(errors='replace').strip()}")
    return peak


def load_pandas(engine, drops: Drops, source: str, batch_id: str, loaded_at: datetime) -> int:
    """read_csv + to_sql for each CSV of ``source``; the meta columns fill from session settings."""
    import pandas as pd

    rows = 0
    with engine.begin() as conn:
        for key, value in (("batch_id", batch_id), ("loaded_at", loaded_at.isoformat())):
            conn.exec_driver_sql("select set_config(%s, %s, false)", (f"crm360.{key}", value))
        for table, path in drops.files[source]:
            conn.exec_driver_sql("select set_config('crm360.source_file', %s, false)", (drops.rel(path),))
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
            if len(frame):
                frame.to_sql(table.table, conn, schema="bench_pandas", if_exists="append", index=False,
                             method="multi", chunksize=PANDAS_CHUNK)
            rows += len(frame)
    return rows


def pandas_applies(drops: Drops, source: str) -> bool:
    return all(table.fmt == "csv" for table, _ in drops.files[source])


def dlt_installed() -> bool:
    return importlib.util.find_spec("dlt") is not None


def dlt_credentials(wh: warehouse.Warehouse):
    """dlt's postgres credentials for ``wh``.

    dlt requires a host and a password: a socket folder (the embedded warehouse) goes in the connection
    string's query, which libpq reads after the host it stands in for; trust authentication gets an
    empty password.
    """
    from dlt.destinations.impl.postgres.configuration import PostgresCredentials

    fields = {"database": wh.dbname, "username": wh.user, "password": wh.password or "", "port": wh.port,
              "host": "localhost" if wh.is_socket else wh.host, "query": {"host": wh.host} if wh.is_socket else {}}
    return PostgresCredentials(fields)


def dlt_pipeline(wh: warehouse.Warehouse, source: str, rep: int, work: Path):
    """A dlt pipeline into the ``bench_dlt`` dataset, its state kept under ``work`` (never the user's home)."""
    import dlt

    return dlt.pipeline(pipeline_name=f"crm360_bench_{source}_{rep}", pipelines_dir=str(work / "dlt_pipelines"),
                        destination=dlt.destinations.postgres(credentials=dlt_credentials(wh)),
                        dataset_name=DLT_DATASET)


def dlt_resources(drops: Drops, source: str) -> list:
    """dlt's filesystem source with its readers, one resource per file set of ``source`` named like the raw table.

    The files are listed by the same globs as for the other methods, under the same landing folder. CSVs
    are read as text (``dtype=str``, empty fields stay empty), as for pandas; JSON lines one record per
    line; a service document is a JSON object whose ``tickets`` list holds the records.
    """
    import dlt
    from dlt.common import json as dlt_json
    from dlt.sources.filesystem import filesystem, read_csv, read_jsonl

    @dlt.transformer
    def read_ticket_documents(items):
        for file_obj in items:
            with file_obj.open() as fh:
                tickets = dlt_json.load(fh).get("tickets") or []
            if tickets:
                yield tickets

    resources = []
    for table in drops.tables(source):
        files = filesystem(bucket_url=drops.landing.as_uri(), file_glob=table.pattern)
        if table.fmt == "csv":
            reader = files | read_csv(dtype=str, keep_default_na=False, encoding="utf-8")
        elif table.fmt == "jsonl":
            reader = files | read_jsonl()
        else:
            reader = files | read_ticket_documents()
        resources.append(reader.with_name(table.table))
    return resources


def load_dlt(pipeline, drops: Drops, source: str, file_format: str) -> dict[str, float]:
    """Extract, normalize and load every file of ``source`` in one ``pipeline.run``; raises if a job failed.

    Returns the seconds of each of dlt's steps, from the run's trace.
    """
    from dlt.common.exceptions import DltException

    try:
        info = pipeline.run(dlt_resources(drops, source), write_disposition="append", loader_file_format=file_format)
        info.raise_on_failed_jobs()
    except DltException as exc:
        raise RuntimeError(f"dlt failed on {source}: {exc}") from exc
    return {str(step.step): (step.finished_at - step.started_at).total_seconds()
            for step in pipeline.last_trace.steps if step.finished_at and step.step != "run"}


# --------------------------------------------------------------------------- one repetition


# Each step runs in a spawned worker (run_step): it connects, imports what it needs, then times the load.


def step_crm360(wh: warehouse.Warehouse, drops: Drops, source: str, batch_id: str,
                loaded_at: datetime, workers: int | None = None) -> tuple[tuple[int, list[str]], float]:
    if workers:  # this worker process's own environment
        os.environ[ingest.LOAD_WORKERS_ENV] = str(workers)
    result, seconds = timed(load_crm360, wh, drops, source, batch_id, loaded_at)
    return (sum(result.rows.values()), result.files_loaded), seconds


def step_psql(psql: str, env: dict[str, str], script: Path) -> tuple[int, float]:
    return timed(run_psql, psql, env, script)


def step_pandas(wh: warehouse.Warehouse, drops: Drops, source: str, batch_id: str,
                loaded_at: datetime) -> tuple[int, float]:
    import pandas  # noqa: F401  (imported before the clock starts)
    from sqlalchemy import create_engine

    engine = create_engine(wh.sqlalchemy_url())
    try:
        return timed(load_pandas, engine, drops, source, batch_id, loaded_at)
    finally:
        engine.dispose()


def step_dlt(wh: warehouse.Warehouse, drops: Drops, source: str, rep: int, work: Path,
             file_format: str) -> tuple[dict[str, float], float]:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")  # no anonymous usage reports from a benchmark
    pipeline = dlt_pipeline(wh, source, rep, work)
    return timed(load_dlt, pipeline, drops, source, file_format)


@dataclass
class Repetition:
    """Seconds, rows and peak RSS per (source, method) of one repetition, plus its row count check."""

    seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    rows: dict[tuple[str, str], int] = field(default_factory=dict)
    peak_rss: dict[tuple[str, str], int] = field(default_factory=dict)
    dlt_steps: dict[str, dict[str, float]] = field(default_factory=dict)  # per source: dlt's step -> seconds
    quarantined: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def record(self, key: tuple[str, str], step: Step) -> None:
        self.seconds[key], self.peak_rss[key] = step.seconds, step.peak_rss


def run_once(server: warehouse.Warehouse, drops: Drops, psql: str, work: Path, rep: int,
             jsonl_into: str, methods: tuple[str, ...] = METHODS, dlt_format: str = DLT_FORMATS[0]) -> Repetition:
    """All methods for all sources on a fresh database, which is dropped afterwards."""
    name = f"crm360_bench_load_{uuid.uuid4().hex[:8]}"
    wh = warehouse.ensure_database(server, name)
    try:
        schema.migrate(wh)
        sources = list(drops.files)
        create_bench_tables(wh, sources, jsonl_into)
        env = psql_env(wh)
        out = Repetition()
        loaded_at = datetime.now(UTC)
        for source in sources:
            batch_id = f"bench_{rep}_{source}"
            if CRM360_ONE in methods:  # crm360 with one connection, as psql has; then emptied for the default
                settle(wh)
                step = run_step(step_crm360, wh, drops, source, batch_id, loaded_at, 1)
                out.record((source, CRM360_ONE), step)
                out.rows[source, CRM360_ONE], files_loaded = step.value
                out.problems += same_files(drops, source, files_loaded)
                empty_source(wh, drops, source)
            settle(wh)
            step = run_step(step_crm360, wh, drops, source, batch_id, loaded_at)
            out.record((source, CRM360), step)
            out.rows[source, CRM360], files_loaded = step.value
            out.problems += same_files(drops, source, files_loaded)
            script = psql_script(drops, source, batch_id, loaded_at, jsonl_into)
            if script is not None:
                path = work / f"copy_{source}.psql"
                path.write_text(script, encoding="utf-8")
                settle(wh)
                step = run_step(step_psql, psql, env, path)
                out.record((source, PSQL), Step(None, step.seconds, step.value))  # psql's own peak, not the worker's
                out.rows[source, PSQL] = sum(count_rows(wh, "bench_copy", t.table) for t in drops.tables(source))
            if PANDAS in methods and pandas_applies(drops, source):
                settle(wh)
                step = run_step(step_pandas, wh, drops, source, batch_id, loaded_at)
                out.record((source, PANDAS), step)
                out.rows[source, PANDAS] = step.value
            if DLT in methods:
                settle(wh)
                step = run_step(step_dlt, wh, drops, source, rep, work, dlt_format)
                out.record((source, DLT), step)
                out.dlt_steps[source] = step.value
                out.rows[source, DLT] = sum(count_rows_if_any(wh, DLT_DATASET, t.table) for t in drops.tables(source))
        out.quarantined = quarantined(wh)
        out.problems += check_counts(wh, drops, out)
        return out
    finally:
        warehouse.drop_database(server, name)


def empty_source(wh: warehouse.Warehouse, drops: Drops, source: str) -> None:
    """Take a crm360 load of ``source`` back out: its raw tables emptied (not deleted from, which would
    leave the next load dead rows to step over), its ledger and quarantine rows deleted."""
    with wh.connect() as conn:
        tables = ", ".join(f"raw.{quote_ident(t.table)}" for t in drops.tables(source))
        conn.execute(f"truncate {tables}")
        conn.execute("delete from audit.load_files where source = %s", (source,))
        conn.execute("delete from raw._quarantine where source = %s", (source,))
        conn.commit()


def same_files(drops: Drops, source: str, loaded: list[str]) -> list[str]:
    """crm360 must have loaded exactly the files the other methods load."""
    ours = {drops.rel(path) for path in drops.paths(source)}
    if set(loaded) == ours:
        return []
    return [f"{source}: crm360 loaded {len(loaded):,} files, the benchmark found {len(ours):,} "
            f"(only crm360: {sorted(set(loaded) - ours)[:3]}, only here: {sorted(ours - set(loaded))[:3]})"]


def check_counts(wh: warehouse.Warehouse, drops: Drops, out: Repetition) -> list[str]:
    """Row counts per table must agree across methods, allowing for rows crm360 quarantined."""
    problems = []
    for source in drops.files:
        for table in drops.tables(source):
            raw = count_rows(wh, "raw", table.table)
            bad = out.quarantined.get(table.table, 0)
            counts = {"psql": count_rows(wh, "bench_copy", table.table) if (source, PSQL) in out.rows else None,
                      "pandas": count_rows(wh, "bench_pandas", table.table) if (source, PANDAS) in out.rows else None,
                      "dlt": count_rows_if_any(wh, DLT_DATASET, table.table) if (source, DLT) in out.rows else None}
            for method, n in counts.items():
                if n is not None and n != raw + bad:
                    problems.append(f"{table.table}: {method} loaded {n:,} rows, crm360 {raw:,} "
                                    f"+ {bad:,} quarantined")
        if (source, CRM360_ONE) in out.rows and out.rows[source, CRM360_ONE] != out.rows[source, CRM360]:
            problems.append(f"{source}: crm360 with one connection loaded {out.rows[source, CRM360_ONE]:,} rows, "
                            f"with {ingest.load_workers()} {out.rows[source, CRM360]:,}")
        if out.rows[source, CRM360] != sum(count_rows(wh, "raw", t.table) for t in drops.tables(source)):
            problems.append(f"{source}: crm360's LoadResult counts {out.rows[source, CRM360]:,} rows, "
                            "its raw tables hold a different number")
    return problems


# --------------------------------------------------------------------------- report


def machine_facts(wh: warehouse.Warehouse, psql: str, drops: Drops, preset: str, origin: str) -> list[str]:
    version = subprocess.run([psql, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    files = ", ".join(f"{s} {len(drops.paths(s)):,} files / {drops.bytes(s) / 1e6:,.1f} MB" for s in drops.files)
    return [
        f"machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}",
        f"warehouse: {'embedded pgserver' if wh.embedded else 'configured server'}, "
        f"PostgreSQL {server_version(wh)}; client: {version}",
        f"data: preset {preset} ({origin}); {files}",
    ]


def median_table(reps: list[Repetition], drops: Drops) -> list[str]:
    """One line per source and method: rows, median seconds, rows/s, MB/s, share of psql's rows/s, and the
    highest peak RSS over the repetitions."""
    lines = [f"{'source':<9}{'method':<15}{'rows':>12}{'seconds':>10}{'rows/s':>12}{'MB/s':>8}{'vs psql':>9}"
             f"{'peak MB':>9}"]
    for source in drops.files:
        measured = [m for m in METHODS if (source, m) in reps[0].seconds]
        seconds = {m: statistics.median(r.seconds[source, m] for r in reps) for m in measured}
        rows = {m: reps[-1].rows[source, m] for m in measured}
        rate = {m: rows[m] / seconds[m] if seconds[m] else 0.0 for m in measured}
        psql_rate = rate.get(PSQL)
        for m in measured:
            share = f"{rate[m] / psql_rate:.0%}" if psql_rate else "n/a"
            peak = max(r.peak_rss[source, m] for r in reps)
            lines.append(f"{source:<9}{m:<15}{rows[m]:>12,}{seconds[m]:>10.2f}{rate[m]:>12,.0f}"
                         f"{drops.bytes(source) / 1e6 / seconds[m]:>8.1f}{share:>9}"
                         f"{peak / 2**20:>9,.0f}")
        if DLT in measured:
            steps = {name: statistics.median(r.dlt_steps[source].get(name, 0.0) for r in reps)
                     for name in reps[0].dlt_steps[source]}
            lines.append(f"{'':<9}dlt's own steps (median s): "
                         + ", ".join(f"{name} {secs:.2f}" for name, secs in steps.items()))
        if psql_rate:
            share = rate[CRM360] / psql_rate
            verdict = "meets" if share >= TARGET_SHARE else "misses"
            lines.append(f"{'':<9}crm360 = {share:.0%} of psql \\copy's rows/s: {verdict} the "
                         f"{TARGET_SHARE:.0%} target")
            if CRM360_ONE in rate:
                lines.append(f"{'':<9}crm360 on one connection, as psql: {rate[CRM360_ONE] / psql_rate:.0%} of "
                             "psql's rows/s")
        else:
            lines.append(f"{'':<9}psql: not measured (a whole JSON document per file has no \\copy equivalent "
                         "that yields one row per record)")
    return lines


def notes(jsonl_into: str, dlt_format: str, idle_rss: int) -> list[str]:
    into = "a 'line text' column" if jsonl_into == "text" else "the 'record jsonb' column (_record_number null)"
    return [
        f"crm360: {ingest.load_workers()} files of a source at a time ({ingest.LOAD_WORKERS_ENV}, default 2, 1 on "
        "one CPU), each on its own connection; 'crm360 1 conn' loads one file at a time, as psql does",
        "psql: one process per source, session settings for the meta columns, one \\copy per file; "
        f"CSV with ({CSV_COPY_OPTIONS}); JSON lines into {into} with csv format, \\x01 quote, \\x02 delimiter",
        "pandas: read_csv(dtype=str) + to_sql(method='multi', chunksize=10_000) through SQLAlchemy/psycopg2, "
        "CSV sources only",
        f"dlt: one pipeline.run per source (extract + normalize + load, loader_file_format={dlt_format!r}) of "
        f"the filesystem source's read_csv(dtype=str) / read_jsonl / the tickets of each service document, "
        f"into dataset {DLT_DATASET}; its pipeline is created before the clock starts, its tables during the run",
        "peak MB: each load runs in a fresh worker process; the kernel's peak RSS (VmHWM) of that worker for "
        "crm360, pandas and dlt (Python and the benchmark's imports included: a worker that loads nothing peaks at "
        f"{idle_rss / 2**20:,.0f} MB), of the psql process for psql; highest over the repetitions; the "
        "PostgreSQL server's memory is not counted",
        "seconds: wall clock per source, median over repetitions, each on a fresh database; "
        "MB/s: the source's file bytes over those seconds",
    ]


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=list(PRESETS),
                        help="generator preset (with --landing: only a label)")
    parser.add_argument("--landing", type=Path, help="reuse drops already generated in this directory")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sources", default="sales,web,service",
                        help=f"comma-separated, of: {', '.join(SOURCE_NAMES)}")
    parser.add_argument("--days", type=int, help="only the drops of the last N days")
    parser.add_argument("--no-pandas", action="store_true",
                        help="skip pandas to_sql (it needs ~15 minutes for the medium preset's sales)")
    parser.add_argument("--no-dlt", action="store_true", help="skip dlt (also skipped when it is not installed)")
    parser.add_argument("--no-one-conn", action="store_true",
                        help="skip crm360 on one connection (by default measured beside crm360's default workers)")
    parser.add_argument("--dlt-format", choices=DLT_FORMATS, default=DLT_FORMATS[0],
                        help="dlt's loader file format for postgres: insert_values (its default) or csv (COPY)")
    parser.add_argument("--jsonl-into", choices=("text", "jsonb"), default="text",
                        help="what psql \\copy loads each JSON line into (default: a text column)")
    args = parser.parse_args(argv)
    args.sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    unknown = [s for s in args.sources if s not in SOURCE_NAMES]
    if unknown or not args.sources:
        parser.error(f"unknown source(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(SOURCE_NAMES)}")
    if args.repeat < 1 or (args.days is not None and args.days < 1):
        parser.error("--repeat and --days must be at least 1")
    if args.landing and not args.landing.is_dir():
        parser.error(f"--landing {args.landing}: no such directory")
    return args


def prepare_drops(args: argparse.Namespace, tmp: Path) -> tuple[Drops, str]:
    """The files to load, generated or reused, cut to the last --days days; and where they came from."""
    if args.landing:
        landing = args.landing.resolve()
        manifest_path = landing / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
        origin = "reused drops"
    else:
        landing = tmp / "landing"
        # psql \copy stops at the first malformed record, so the shared files carry none; crm360's
        # quarantine path is measured by the test suite, not here
        cfg = GeneratorConfig.preset(args.preset, malformed_rate=0.0, progress=False)
        (_, manifest), seconds = timed(generate, landing, cfg)
        origin = f"generated without malformed records in {seconds:.1f}s"
    if manifest:
        origin += (f": {manifest.get('people', 0):,} people, {manifest.get('orders', 0):,} orders, "
                   f"{manifest.get('web_events', 0):,} web events")
    drops = find_drops(landing, args.sources)
    if args.days:
        drops = last_days(drops, args.days, tmp / "landing_last_days")
        origin += f"; last {args.days} day(s) only"
    return drops, origin


def report(args: argparse.Namespace, facts: list[str], reps: list[Repetition], drops: Drops,
           idle_rss: int) -> list[str]:
    """Print the results; return the row count mismatches found."""
    print(f"crm360 load throughput vs psql \\copy, pandas and dlt, median of {args.repeat} repetition(s)")
    print("\n".join(facts))
    print("\n".join(median_table(reps, drops)))
    print("\n".join(f"note: {n}" for n in notes(args.jsonl_into, args.dlt_format, idle_rss)))
    bad = sorted({f"{t}: {n:,}" for r in reps for t, n in r.quarantined.items()})
    print(f"quarantined by crm360: {'; '.join(bad) if bad else 'none'}")
    problems = [f"repetition {i + 1}: {p}" for i, r in enumerate(reps) for p in r.problems]
    for problem in problems:
        print(f"ROW COUNT MISMATCH {problem}", file=sys.stderr)
    compared = [name for name, m in (("psql", PSQL), ("pandas", PANDAS), ("dlt", DLT))
                if any(key[1] == m for key in reps[0].rows)]
    agree = (f"agree per table ({', '.join(compared)} = crm360 + quarantined)" if compared
             else "crm360 only, nothing to compare")
    print(f"row counts: {'MISMATCH (see stderr)' if problems else agree}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = get_settings()
    psql = find_psql()
    methods = tuple(m for m in METHODS if not (args.no_pandas and m == PANDAS) and not (args.no_dlt and m == DLT)
                    and not (args.no_one_conn and m == CRM360_ONE))
    if DLT in methods and not dlt_installed():
        print("dlt not installed: make bench-deps (skipping dlt)", file=sys.stderr)
        methods = tuple(m for m in methods if m != DLT)
    with tempfile.TemporaryDirectory(prefix="crm360_bench_load_") as tmp:
        tmp = Path(tmp)
        drops, origin = prepare_drops(args, tmp)
        warm_page_cache(drops)
        settings = Settings(project_dir=base.project_dir, home=tmp / "home", landing_dir=drops.landing,
                            warehouse_url=base.warehouse_url)
        server = (warehouse.from_url(settings.warehouse_url) if settings.warehouse_url
                  else warehouse.start_embedded(settings))
        try:
            facts = machine_facts(server, psql, drops, args.preset, origin)
            idle_rss = run_step(step_nothing).peak_rss
            reps = [run_once(server, drops, psql, tmp, i, args.jsonl_into, methods, args.dlt_format)
                    for i in range(args.repeat)]
        except (RuntimeError, psycopg.Error) as exc:  # crm360's IngestError and WarehouseError included
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            if not settings.warehouse_url:
                warehouse.stop_embedded(settings)
        problems = report(args, facts, reps, drops, idle_rss)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
