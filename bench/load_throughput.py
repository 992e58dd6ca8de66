"""Load throughput of crm360's loaders against psql \\copy (and pandas) on the same files, in one run.

    .venv/bin/python bench/load_throughput.py --preset small [--repeat 3] [--sources sales,web,service]
    .venv/bin/python bench/load_throughput.py --preset medium --landing DIR --days 7

Each repetition uses a fresh database and loads the same drop files three ways, timing each source:

* crm360: ``crm360.ingest.load_source`` per source into ``raw.*``;
* psql \\copy: one psql process per source runs a generated script, one ``\\copy`` per file, into
  ``bench_copy.*`` tables created ``like raw.* including defaults`` (the meta columns fill from the
  same ``crm360.*`` settings). JSON lines go in one per row, into a text column (``--jsonl-into
  jsonb``: into ``record jsonb``). The service tickets (one JSON document per file) are crm360 only;
* pandas: ``read_csv(...).to_sql(method="multi", chunksize=10_000)`` into ``bench_pandas.*``, sales CSVs only.

The files are found where crm360.generate writes them (the layout of the default sources.yml), and
the run checks that crm360 loaded exactly those files. Prints rows, median seconds and rows/s per
source and method, crm360's rows/s as a share of psql's (target: at least 70 %), and checks that the
methods' row counts agree, allowing for the records crm360 quarantined. Uses the embedded warehouse
(a throwaway server under a temporary directory) unless CRM360_WAREHOUSE_URL is set; each database
is dropped afterwards. Exits 1 on errors and on row count mismatches, never on a missed target.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
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

from crm360 import ingest, warehouse
from crm360.generate import PRESETS, GeneratorConfig, generate
from crm360.settings import Settings, get_settings

CRM360, PSQL, PANDAS = "crm360", "psql \\copy", "pandas to_sql"
METHODS = (CRM360, PSQL, PANDAS)
TARGET_SHARE = 0.70  # the target: crm360 at least 70 % of psql \copy's rows/s
PANDAS_CHUNK = 10_000
# control characters json.dumps always escapes: as CSV quote and delimiter they never occur in a JSON line
JSONL_COPY_OPTIONS = "format csv, quote e'\\x01', delimiter e'\\x02', encoding 'UTF8'"
CSV_COPY_OPTIONS = "format csv, header true, encoding 'UTF8'"


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class FileSet:
    """One kind of drop: where crm360.generate writes it (the default sources.yml) and its raw table."""

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


def quarantined(wh: warehouse.Warehouse) -> dict[str, int]:
    """Records crm360 set aside as malformed, per raw table."""
    with wh.connect() as conn:
        return dict(conn.execute("select table_name, count(*) from raw._quarantine group by 1").fetchall())


def server_version(wh: warehouse.Warehouse) -> str:
    with wh.connect() as conn:
        return conn.execute("show server_version").fetchone()[0]


# --------------------------------------------------------------------------- the three loaders


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


def run_psql(psql: str, env: dict[str, str], script: Path) -> None:
    done = subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script)],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"psql failed on {script.name}: {done.stderr.strip()}")


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


# --------------------------------------------------------------------------- one repetition


@dataclass
class Repetition:
    """Seconds and rows per (source, method) of one repetition, plus its row count check."""

    seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    rows: dict[tuple[str, str], int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def run_once(server: warehouse.Warehouse, drops: Drops, psql: str, work: Path, rep: int,
             jsonl_into: str, methods: tuple[str, ...] = METHODS) -> Repetition:
    """All methods for all sources on a fresh database, which is dropped afterwards."""
    from sqlalchemy import create_engine

    name = f"crm360_bench_load_{uuid.uuid4().hex[:8]}"
    wh = warehouse.ensure_database(server, name)
    engine = None
    try:
        wh.ensure_schemas()
        ingest.prepare_raw(wh)
        sources = list(drops.files)
        create_bench_tables(wh, sources, jsonl_into)
        engine = create_engine(wh.sqlalchemy_url())
        env = psql_env(wh)
        out = Repetition()
        loaded_at = datetime.now(UTC)
        for source in sources:
            batch_id = f"bench_{rep}_{source}"
            settle(wh)
            result, out.seconds[source, CRM360] = timed(load_crm360, wh, drops, source, batch_id, loaded_at)
            out.rows[source, CRM360] = sum(result.rows.values())
            out.problems += same_files(drops, source, result.files_loaded)
            script = psql_script(drops, source, batch_id, loaded_at, jsonl_into)
            if script is not None:
                path = work / f"copy_{source}.psql"
                path.write_text(script, encoding="utf-8")
                settle(wh)
                _, out.seconds[source, PSQL] = timed(run_psql, psql, env, path)
                out.rows[source, PSQL] = sum(count_rows(wh, "bench_copy", t.table) for t in drops.tables(source))
            if PANDAS in methods and pandas_applies(drops, source):
                settle(wh)
                out.rows[source, PANDAS], out.seconds[source, PANDAS] = timed(
                    load_pandas, engine, drops, source, batch_id, loaded_at)
        out.quarantined = quarantined(wh)
        out.problems += check_counts(wh, drops, out)
        return out
    finally:
        if engine is not None:
            engine.dispose()
        warehouse.drop_database(server, name)


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
                      "pandas": count_rows(wh, "bench_pandas", table.table) if (source, PANDAS) in out.rows else None}
            for method, n in counts.items():
                if n is not None and n != raw + bad:
                    problems.append(f"{table.table}: {method} loaded {n:,} rows, crm360 {raw:,} "
                                    f"+ {bad:,} quarantined")
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
    """One line per source and method: rows, median seconds, rows/s, MB/s, share of psql's rows/s."""
    lines = [f"{'source':<9}{'method':<15}{'rows':>12}{'seconds':>10}{'rows/s':>12}{'MB/s':>8}{'vs psql':>9}"]
    for source in drops.files:
        measured = [m for m in METHODS if (source, m) in reps[0].seconds]
        seconds = {m: statistics.median(r.seconds[source, m] for r in reps) for m in measured}
        rows = {m: reps[-1].rows[source, m] for m in measured}
        rate = {m: rows[m] / seconds[m] if seconds[m] else 0.0 for m in measured}
        psql_rate = rate.get(PSQL)
        for m in measured:
            share = f"{rate[m] / psql_rate:.0%}" if psql_rate else "n/a"
            lines.append(f"{source:<9}{m:<15}{rows[m]:>12,}{seconds[m]:>10.2f}{rate[m]:>12,.0f}"
                         f"{drops.bytes(source) / 1e6 / seconds[m]:>8.1f}{share:>9}")
        if psql_rate:
            share = rate[CRM360] / psql_rate
            verdict = "meets" if share >= TARGET_SHARE else "misses"
            lines.append(f"{'':<9}crm360 = {share:.0%} of psql \\copy's rows/s: {verdict} the "
                         f"{TARGET_SHARE:.0%} target")
        else:
            lines.append(f"{'':<9}psql: not measured (a whole JSON document per file has no \\copy equivalent "
                         "that yields one row per record); crm360 only")
    return lines


def notes(jsonl_into: str) -> list[str]:
    into = "a 'line text' column" if jsonl_into == "text" else "the 'record jsonb' column (_record_number null)"
    return [
        "psql: one process per source, session settings for the meta columns, one \\copy per file; "
        f"CSV with ({CSV_COPY_OPTIONS}); JSON lines into {into} with csv format, \\x01 quote, \\x02 delimiter",
        "pandas: read_csv(dtype=str) + to_sql(method='multi', chunksize=10_000) through SQLAlchemy/psycopg2, "
        "CSV sources only",
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


def report(args: argparse.Namespace, facts: list[str], reps: list[Repetition], drops: Drops) -> list[str]:
    """Print the results; return the row count mismatches found."""
    print(f"crm360 load throughput vs psql \\copy, median of {args.repeat} repetition(s)")
    print("\n".join(facts))
    print("\n".join(median_table(reps, drops)))
    print("\n".join(f"note: {n}" for n in notes(args.jsonl_into)))
    bad = sorted({f"{t}: {n:,}" for r in reps for t, n in r.quarantined.items()})
    print(f"quarantined by crm360: {'; '.join(bad) if bad else 'none'}")
    problems = [f"repetition {i + 1}: {p}" for i, r in enumerate(reps) for p in r.problems]
    for problem in problems:
        print(f"ROW COUNT MISMATCH {problem}", file=sys.stderr)
    agree = "agree per table (psql and pandas = crm360 + quarantined)"
    print(f"row counts: {'MISMATCH (see stderr)' if problems else agree}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = get_settings()
    psql = find_psql()
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
            methods = tuple(m for m in METHODS if not (args.no_pandas and m == PANDAS))
            reps = [run_once(server, drops, psql, tmp, i, args.jsonl_into, methods) for i in range(args.repeat)]
        except (RuntimeError, psycopg.Error) as exc:  # crm360's IngestError and WarehouseError included
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            if not settings.warehouse_url:
                warehouse.stop_embedded(settings)
        problems = report(args, facts, reps, drops)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
