"""The warehouse half of ``crm360 sources check`` (``preview``): the samples loaded as a run loads
them, checked as a run checks them, and nothing left behind.

Each raw table a sample feeds gets a table of its own, ``scratch._check_<token>_<raw table>``,
made ``like`` the raw table (its columns and the defaults that stamp batch, file and load time).
A file's sample goes in through ``crm360.ingest.validate.copy_checked``, the code every load runs
(COPY, malformed records set aside, the contract's value checks in SQL taking bad dates and
quantities out again); a database table's through ``crm360.ingest.sql.copy_rows``, as a window
is loaded (a SQL load checks no values: its gate does). The raw gate suites then run, as the
deployment's ``quality:`` section configures them, with ``raw.<table>`` in their queries read as
the sample's table and only the dry run's batch selected (``crm360.quality.gates.run_suites``,
the gates' own code; no verdict is recorded). The tables are dropped whatever happens.
Nothing in ``raw`` or ``audit`` is read or written.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, date, datetime

import psycopg
from psycopg import sql

from crm360.core.schema import require_current
from crm360.core.settings import Settings
from crm360.core.warehouse import Warehouse
from crm360.ingest import csvfile, validate
from crm360.ingest import sql as sql_source
from crm360.ingest.batch import IngestError, begin_file_load, first_line, where
from crm360.ingest.sample import job
from crm360.ingest.sources import CsvTable
from crm360.quality import gates

log = logging.getLogger(__name__)

PREFIX = "_check_"  # scratch tables of a dry run: _check_<token>_<raw table>
RAW_TABLE = re.compile(r"\braw\.([a-z][a-z0-9_]*)\b")


def run(wh: Warehouse, samples: list, settings: Settings, as_of: date) -> None:
    """Load ``samples`` (preview.Sample) into scratch tables, check them, fill in their results, drop the tables."""
    require_current(wh)  # the raw tables and the scratch schema are the migrations'
    token = uuid.uuid4().hex[:8]
    batch_id = f"check.{token}"
    tables = {s.result.raw_table: f"{PREFIX}{token}_{s.result.raw_table}" for s in samples}
    try:
        with wh.connect() as conn:
            for raw_table, name in tables.items():
                conn.execute(sql.SQL("create unlogged table {} (like {} including defaults)").format(
                    sql.Identifier(gates.SCRATCH, name), sql.Identifier("raw", raw_table)))
            conn.commit()
            loaded_at = datetime.now(UTC)
            for sample in samples:
                _load(conn, sample, sql.Identifier(gates.SCRATCH, tables[sample.result.raw_table]), batch_id,
                      loaded_at)
            conn.commit()
        _gate(wh, samples, tables, settings, as_of, batch_id)
    finally:
        with wh.connect(autocommit=True) as conn:
            for name in tables.values():
                conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(gates.SCRATCH, name)))


def _load(conn: psycopg.Connection, sample, target: sql.Identifier, batch_id: str, loaded_at: datetime) -> None:
    result = sample.result
    try:
        with conn.transaction():
            if sample.drop is None:  # a database table's newest rows, as a window of them loads
                begin_file_load(conn, result.source, sample.rel, batch_id, loaded_at)
                sql_source.copy_rows(conn, sample.plan, target, sample.rows)
                result.loaded = True
                return
            load = job(sample.drop, batch_id, loaded_at)
            begin_file_load(conn, result.source, load.rel, batch_id, loaded_at)
            if isinstance(load.contract, CsvTable):
                first, _, header = csvfile.header(load)
                outcome = validate.copy_checked(conn, load, target, first, header)
            else:
                outcome = validate.copy_checked(conn, load, target)
    except IngestError as exc:
        result.error = str(exc)
        return
    except psycopg.Error as exc:
        if isinstance(exc, psycopg.OperationalError):
            raise
        result.error = f"the warehouse rejected the sample ({exc.__class__.__name__}: {first_line(exc)})"
        return
    result.loaded = True
    result.sampled = outcome.rows + len(outcome.bad)
    result.bad = [(where(b) if b[0] is not None or b[1] is not None else "", b[2]) for b in outcome.bad]


def _gate(wh: Warehouse, samples: list, tables: dict[str, str], settings: Settings, as_of: date,
          batch_id: str) -> None:
    """Run the raw suites that read only sampled tables; each failed check goes to the tables its suite reads."""
    expected = gates.deployment_expectations(settings)
    suites = []
    for suite in gates.load_suites("raw", settings.expectations_dir):
        read = set(RAW_TABLE.findall(suite.query)) - {"_is_valid"}
        if read and read <= set(tables):
            suites.append((expected.apply(suite), read))

    def query(suite: gates.Suite) -> str:
        text = gates.suite_query(suite, {"as_of": as_of.isoformat()}, [batch_id])
        return RAW_TABLE.sub(lambda m: f"{gates.SCRATCH}.{tables[m[1]]}" if m[1] in tables else m[0], text)

    results = gates.run_suites(wh, "raw", [s for s, _ in suites], query)
    reads = {s.name: read for s, read in suites}
    for check in results:
        if check.success:
            continue
        for sample in samples:
            if sample.result.raw_table in reads[check.suite] and sample.result.loaded:
                sample.result.gates.append(check.describe())
