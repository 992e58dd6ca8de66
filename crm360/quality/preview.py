"""A dry run of the deployment's sources (``crm360 sources check``), before anything is loaded:
for each bound CSV table, its newest file read through the same header check and mapping as a
load, the first rows as crm360 will see them, the sampled records the load would quarantine and
why, and the raw gates' configurable fill rates (the ``quality:`` section) measured on the sample.

It reads files only, never the warehouse: the value checks that run in SQL on load (types,
ranges) and the gates' other checks are not part of it. What it finds is still what stops a run
first: a missing required column, a date or number the mapping cannot read, an expected column
left empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

from crm360.core.errors import ConfigurationError
from crm360.core.settings import Settings, get_settings
from crm360.core.systems import sources_file
from crm360.ingest import batch, csvfile, currency, drops
from crm360.ingest.batch import IngestError
from crm360.ingest.shape import Shaper
from crm360.ingest.sources import CsvTable, FileSource, load_config
from crm360.quality import expect, gates


@dataclass
class TableCheck:
    source: str
    table: str
    files: int = 0
    file: str | None = None  # the file sampled: the newest
    rows: list[dict] = field(default_factory=list)  # the first records after mapping
    sampled: int = 0
    bad: list[tuple[int | None, str]] = field(default_factory=list)  # (line, reason)
    gates: list[str] = field(default_factory=list)  # raw checks that would fail on the sample
    error: str | None = None  # what stops the table's load outright
    note: str | None = None

    @property
    def fails(self) -> bool:
        too_bad = self.sampled and len(self.bad) / self.sampled > batch.max_bad_fraction()
        return bool(self.error or self.gates or too_bad)


def check(settings: Settings | None = None, landing: Path | None = None, sample: int = 1000,
          shown: int = 5) -> list[TableCheck]:
    """Check every bound table on the first ``sample`` records of its newest file."""
    settings = settings or get_settings()
    path = sources_file(settings.project_dir)
    config = load_config(path)
    suites = gates.load_suites("raw", settings.expectations_dir)
    expected = expect.load(path, suites + gates.load_suites("marts", settings.expectations_dir))
    out = _rates(path)
    for name, binding in config.items():
        if not isinstance(binding, FileSource):
            out += [TableCheck(name, t.contract.name, note="read from a database: not sampled")
                    for t in binding.tables]
            continue
        found: dict[str, list[drops.Drop]] = {}
        try:
            for drop in drops.discover(landing or settings.landing_dir, binding):
                found.setdefault(drop.table.name, []).append(drop)
        except IngestError as exc:
            raise ConfigurationError(str(exc)) from None
        for table in binding.tables:
            result = TableCheck(name, table.name, files=len(found.get(table.name, [])))
            out.append(result)
            if not result.files:
                result.note = f"no file matches {table.pattern!r}"
                continue
            newest = max(found[table.name], key=lambda d: d.rel)
            result.file = newest.rel
            if not isinstance(table.contract, CsvTable):
                result.note = "JSON records: checked on load"
                continue
            _sample_csv(result, newest, sample, shown)
            if not result.error:
                suite = next((s for s in suites if s.name == f"raw_{table.table}"), None)
                if suite is not None:
                    result.gates = _filled(expected.apply(suite), result, newest, sample)
    return out


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


def _job(drop: drops.Drop) -> drops.FileLoad:
    return drops.FileLoad(drop.table.contract.table, drop, "check", datetime.now(UTC))


def _mapped(drop: drops.Drop, sample: int):
    """(line, record, values by crm360 column or None, problem) of the first ``sample`` records."""
    job = _job(drop)
    _, _, header = csvfile.header(job)
    types = dict(drop.table.contract.types)
    shaper = Shaper.of(drop.table, header, drop.file) if drop.table.shape else None
    for line, record, fields, problem in islice(csvfile.records(job, len(header)), sample):
        if problem:
            yield line, record, None, problem
            continue
        if shaper is None:
            values = {c: fields[i] for i, c in enumerate(header) if c in drop.table.contract.columns}
        else:
            row, problem = shaper.row(fields, record, types)
            values = None if problem else dict(zip(shaper.names, row, strict=True))
        yield line, record, values, problem


def _sample_csv(result: TableCheck, drop: drops.Drop, sample: int, shown: int) -> None:
    try:
        for line, _, values, problem in _mapped(drop, sample):
            result.sampled += 1
            if problem:
                result.bad.append((line, problem))
            elif len(result.rows) < shown:
                result.rows.append(values)
    except IngestError as exc:
        result.error = str(exc)


def _filled(suite: gates.Suite, result: TableCheck, drop: drops.Drop, sample: int) -> list[str]:
    """The suite's fill-rate checks (as configured) that the sample would fail."""
    failing = []
    for exp in suite.expectations:
        kind, column = expect.marked(exp)
        if kind != "filled" or exp["type"] != "expect_column_values_to_not_be_null":
            continue
        values = [v for _, _, v, p in _mapped(drop, sample) if not p]
        if not values or column not in drop.table.contract.columns:
            continue
        share = sum(1 for v in values if (v.get(column) or "").strip()) / len(values)
        mostly = exp["kwargs"].get("mostly", 1.0)
        if share < mostly:
            failing.append(f"{suite.name}.{column}: {share:.0%} of the sampled rows have a value, the raw gate "
                           f"expects {mostly:.0%} (set quality.{suite.name}.filled.{column} if that is normal)")
    return failing


def render(results: list[TableCheck]) -> str:
    lines = []
    for r in results:
        head = f"{r.source}.{r.table}: "
        if r.note and not r.file:
            lines.append(head + r.note)
            continue
        lines.append(head + f"{r.files} file(s); sampled {r.file}" + (f" ({r.note})" if r.note else ""))
        if r.error:
            lines.append(f"  FAILS: {r.error}")
            continue
        if r.sampled:
            lines.append(f"  {r.sampled} record(s) read, {len(r.bad)} would be quarantined")
        for row in r.rows:
            lines.append("  | " + ", ".join(f"{k}={v!r}" for k, v in row.items() if v not in (None, "")))
        for line, reason in r.bad[:10]:
            lines.append(f"  quarantined: line {line}: {reason}")
        for gate in r.gates:
            lines.append(f"  GATE FAILS: {gate}")
        if r.fails and not r.gates and not r.error:
            lines.append(f"  FAILS: more than {batch.max_bad_fraction():.1%} of the sampled records are malformed")
    failing = sum(r.fails for r in results)
    lines.append(f"{failing} table(s) would fail a run" if failing else "no table would fail a run on this sample")
    return "\n".join(lines)
