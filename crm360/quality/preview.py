"""A dry run of the deployment's sources (``crm360 sources check``), before anything is loaded.

For each bound table it reads a bounded sample: the first ``sample`` records of the newest file
(CSV, Excel, JSON, JSON lines; ``crm360.ingest.sample``), or the newest ``sample`` rows of a
database table by its cursor. It shows the first of them as crm360 will see them after mapping.

With a warehouse (the default), it then loads the samples the way a run would: into tables of
their own in the ``scratch`` schema made like the raw tables, by the loaders' own code (COPY, the
contract's value checks in SQL: ``crm360.ingest.validate.copy_checked``), and runs the raw gate
suites, as the deployment's ``quality:`` section configures them, on those rows
(``crm360.quality.gates.run_suites``; ``dryrun``). It reports what a load would quarantine and why,
and which raw checks would fail, then drops the tables: nothing stays in the warehouse, and
nothing in ``raw`` or ``audit`` is written. Without one (``--no-warehouse``) only what is read
in Python is checked: the header, the mapping, malformed records, values the shape cannot read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import islice
from pathlib import Path

from crm360.core.errors import ConfigurationError
from crm360.core.settings import Settings, get_settings
from crm360.core.systems import sources_file
from crm360.core.warehouse import Warehouse
from crm360.ingest import batch, csvfile, currency, drops, jsonfile
from crm360.ingest import sql as sql_source
from crm360.ingest.batch import IngestError
from crm360.ingest.mysql import parse_mysql_url
from crm360.ingest.sample import SampleDrop, job, sample_drop
from crm360.ingest.shape import Shaper
from crm360.ingest.sources import CsvTable, FileSource, SqlSourceBinding, load_config


@dataclass
class TableCheck:
    source: str
    table: str
    raw_table: str | None = None
    files: int = 0
    file: str | None = None  # what was sampled: the newest file, or the database table
    rows: list[dict] = field(default_factory=list)  # the first records after mapping
    sampled: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)  # ('line 3' or 'record 3', reason)
    gates: list[str] = field(default_factory=list)  # raw checks that would fail on the sample
    error: str | None = None  # what stops the table's load outright
    note: str | None = None
    loaded: bool = False  # the sample went through the warehouse's checks

    @property
    def fails(self) -> bool:
        return bool(self.error or self.gates or self.too_bad)

    @property
    def too_bad(self) -> bool:
        return bool(self.sampled and len(self.bad) / self.sampled > batch.max_bad_fraction())


@dataclass
class Sample:
    """What is loaded for one table: a file's first records, or a database table's newest rows."""

    result: TableCheck
    drop: SampleDrop | None = None
    rel: str | None = None  # a database table's rows: the name the load gives them
    plan: object = None  # crm360.ingest.sql's plan of the table
    rows: list[list[str | None]] = field(default_factory=list)


def check(settings: Settings | None = None, landing: Path | None = None, sample: int = 1000, shown: int = 5,
          wh: Warehouse | None = None, as_of: date | None = None) -> list[TableCheck]:
    """Check every bound table on a sample of ``sample`` records; with ``wh``, load the samples into
    scratch tables there, run the load's value checks and the raw gates on them, and drop them."""
    if sample < 1:
        raise ConfigurationError(f"the sample must be at least one record, got {sample}")
    settings = settings or get_settings()
    path = sources_file(settings.project_dir)
    config = load_config(path)
    out: list[TableCheck] = _rates(path)
    samples: list[Sample] = []
    for name, binding in config.items():
        if isinstance(binding, SqlSourceBinding):
            _sample_sql(name, binding, sample, shown, out, samples)
        else:
            _sample_files(name, binding, landing or settings.landing_dir, sample, shown, out, samples)
    if wh is not None and samples:
        from crm360.quality import dryrun

        dryrun.run(wh, samples, settings, as_of or datetime.now(UTC).date())
    return out


def _sample_sql(name: str, binding: SqlSourceBinding, sample: int, shown: int, out: list[TableCheck],
                samples: list[Sample]) -> None:
    try:
        source = sql_source.from_binding(binding)
        url = parse_mysql_url(source.url)
        for table, plan, rows in sql_source.sample(source, sample):
            result = TableCheck(name, table.name, table.raw_table, files=1, sampled=len(rows),
                                file=f"{table.source_table} (the newest {len(rows)} row(s) by {table.cursor})",
                                rows=[dict(zip(plan.raw_columns, r, strict=True)) for r in rows[:shown]])
            out.append(result)
            rel = f"{sql_source.window_prefix(url, table)}newest-{len(rows)}"  # its _source_file
            samples.append(Sample(result, rel=rel, plan=plan, rows=rows))
    except IngestError as exc:
        out.append(TableCheck(name, "*", error=str(exc)))


def _rates(path: Path) -> list[TableCheck]:
    """The rates file of ``currency:``, checked as a sales load checks it (which orders would lack a
    rate is not: that needs the rates the warehouse holds beside the orders)."""
    money = currency.load(path)
    if money.rates_file is None:
        return []
    result = TableCheck("currency", "rates", files=1, file=str(money.rates_file))
    try:
        result.note = f"{len(currency.read_rates(money))} rate(s) to {money.reporting}"
    except currency.CurrencyConfigError as exc:
        result.error = str(exc)
    return [result]


def _sample_files(name: str, binding: FileSource, landing: Path, sample: int, shown: int, out: list[TableCheck],
                  samples: list[Sample]) -> None:
    found: dict[str, list[drops.Drop]] = {}
    try:
        for drop in drops.discover(landing, binding):
            found.setdefault(drop.table.name, []).append(drop)
    except IngestError as exc:
        raise ConfigurationError(str(exc)) from None
    for table in binding.tables:
        result = TableCheck(name, table.name, table.table, files=len(found.get(table.name, [])))
        out.append(result)
        if not result.files:
            result.note = f"no file matches {table.pattern!r}"
            continue
        newest = max(found[table.name], key=lambda d: d.rel)
        result.file = newest.rel
        try:
            drop = sample_drop(newest, sample)
            if isinstance(table.contract, CsvTable):
                _read_csv(result, drop, shown)
            else:
                _read_json(result, drop, shown)
        except IngestError as exc:
            result.error = str(exc)
            continue
        samples.append(Sample(result, drop=drop))


def _mapped(drop: drops.Drop):
    """(line, record, values by crm360 column or None, problem) of a CSV drop's records, as a load maps them."""
    load = job(drop)
    _, _, header = csvfile.header(load)
    types = dict(drop.table.contract.types)
    shaper = Shaper.of(drop.table, header, drop.file) if drop.table.shape else None
    for line, record, fields, problem in csvfile.records(load, len(header)):
        if problem:
            yield line, record, None, problem
            continue
        if shaper is None:
            values = {c: fields[i] for i, c in enumerate(header) if c in drop.table.contract.columns}
        else:
            row, problem = shaper.row(fields, record, types)
            values = None if problem else dict(zip(shaper.names, row, strict=True))
        yield line, record, values, problem


def _read_csv(result: TableCheck, drop: drops.Drop, shown: int) -> None:
    for line, _, values, problem in _mapped(drop):
        result.sampled += 1
        if problem:
            result.bad.append((f"line {line}", problem))
        elif len(result.rows) < shown:
            result.rows.append(values)


def _read_json(result: TableCheck, drop: drops.Drop, shown: int) -> None:
    for line, number, text, problem, _ in jsonfile.records(job(drop)):
        result.sampled += 1
        if problem:
            result.bad.append((batch.where((line, number)), problem))
        elif len(result.rows) < shown:
            record = jsonfile.parse(text)
            result.rows.append({k: v for k, v in islice(record.items(), 12)} if isinstance(record, dict) else {})


def render(results: list[TableCheck]) -> str:
    lines = []
    for r in results:
        head = f"{r.source}.{r.table}: "
        if r.note and not r.file:
            lines.append(head + r.note)
            continue
        if r.file is None:
            lines.append(head + f"FAILS: {r.error}")
            continue
        lines.append(head + f"{r.files} file(s); sampled {r.file}" + (f" ({r.note})" if r.note else ""))
        if r.error:
            lines.append(f"  FAILS: {r.error}")
            continue
        checked = "; loaded and checked in the warehouse" if r.loaded else ""
        lines.append(f"  {r.sampled} record(s) read, {len(r.bad)} would be quarantined{checked}")
        for row in r.rows:
            lines.append("  | " + ", ".join(f"{k}={v!r}" for k, v in row.items() if v not in (None, "")))
        for where, reason in r.bad[:10]:
            lines.append(f"  quarantined: {where}: {reason}" if where else f"  quarantined: {reason}")
        for gate in r.gates:
            lines.append(f"  GATE FAILS: {gate}")
        if r.too_bad:
            lines.append(f"  FAILS: {len(r.bad)} of {r.sampled} sampled records would be quarantined, more than "
                         f"the {batch.max_bad_fraction():.1%} a batch may have (CRM360_MAX_BAD_ROW_FRACTION)")
    failing = sum(r.fails for r in results)
    lines.append(f"{failing} table(s) would fail a run" if failing else "no table would fail a run on this sample")
    return "\n".join(lines)
