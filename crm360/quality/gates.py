"""Data-quality gates: Great Expectations suites from ``expectations/`` run as SQL
in the warehouse. A gate with any failed expectation raises ``GateFailed``, which
fails the run before anything downstream happens."""

from __future__ import annotations

import json
import logging
import os
import re
import string
import uuid
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from psycopg.types.json import Jsonb

from crm360.core.errors import Crm360Error
from crm360.core.settings import Settings, get_settings
from crm360.core.systems import sources_file
from crm360.core.warehouse import Warehouse
from crm360.quality import expect

log = logging.getLogger(__name__)

STAGES = ("raw", "marts")
# where a suite's rows are computed for GX to read (migration 0003): unlogged tables with names of
# their own, dropped after the gate; nobody else reads or writes this schema
SCRATCH = "scratch"

class GateFailed(Crm360Error):
    """At least one expectation failed; the message names each failed check."""

    def __init__(self, stage: str, failures: list[CheckResult]):
        self.stage = stage
        self.failures = failures
        lines = [f"{stage} gate failed: {len(failures)} check(s) did not pass"]
        for f in failures:
            lines.append(f"  - {f.describe()}")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Suite:
    name: str
    stage: str
    query: str
    expectations: list[dict]
    path: Path
    key: tuple[str, ...] = ()


@dataclass
class CheckResult:
    suite: str
    expectation: str
    column: str | None
    success: bool
    unexpected_count: int | None
    observed_value: str | None
    sample: list

    def describe(self) -> str:
        where = f"{self.suite}.{self.column}" if self.column else self.suite
        detail = []
        if self.unexpected_count:
            detail.append(f"{self.unexpected_count} unexpected")
        if self.observed_value not in (None, "None"):
            detail.append(f"observed {self.observed_value}")
        if self.sample:
            detail.append(f"e.g. {self.sample[:5]}")
        return f"{where}: {self.expectation}" + (f" ({'; '.join(detail)})" if detail else "")


def load_suites(stage: str, directory: Path | None = None) -> list[Suite]:
    if stage not in STAGES:
        raise ValueError(f"unknown gate stage {stage!r}; expected one of {STAGES}")
    directory = directory or get_settings().expectations_dir
    suites = []
    for path in sorted(directory.rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path.name}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
        meta = (data.get("meta") or {}).get("crm360") or {}
        if meta.get("stage") != stage:
            continue
        if not meta.get("query") or not data.get("expectations"):
            raise ValueError(f"{path.name}: a suite needs meta.crm360.query and expectations")
        suites.append(Suite(data["name"], stage, meta["query"], data["expectations"], path,
                            tuple(meta.get("key") or ())))
    return suites


def deployment_expectations(settings: Settings | None = None) -> expect.Expectations:
    """The deployment's settings for the suites' configurable checks (the ``quality:`` section of
    its sources.yml), checked against every suite of both stages: a wrong entry fails the first gate."""
    settings = settings or get_settings()
    suites = [s for stage in STAGES for s in load_suites(stage, settings.expectations_dir)]
    return expect.load(sources_file(settings.project_dir), suites)


def _context():
    """An ephemeral GX context: suites live in this repo, results in the warehouse."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    # add_sql on purpose: add_postgres rejects socket URLs (the embedded server)
    warnings.filterwarnings("ignore", message=".*more specific PostgresDatasource.*")
    import great_expectations as gx

    # GX logs at INFO where it puts its (unused) docs site: noise in every gate's and check's output
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    try:  # progress bars garble Airflow task logs
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except Exception:  # noqa: BLE001 - cosmetic only
        pass
    return context


def run_gate(wh: Warehouse, stage: str, run_id: str, batch_ids: list[str] | None = None,
             settings: Settings | None = None, raise_on_failure: bool = True,
             params: dict[str, str] | None = None) -> list[CheckResult]:
    """Validate every suite of ``stage``. For ``raw``, only rows of ``batch_ids``.

    ``params`` fill the ``${name}`` placeholders of the suites' queries: ``as_of``
    (the run date), ``marts`` (the schema under audit) and what
    ``query_params`` computes.
    """
    settings = settings or get_settings()
    expected = deployment_expectations(settings)
    suites = [expected.apply(suite) for suite in load_suites(stage, settings.expectations_dir)]
    if stage == "raw" and not batch_ids:
        log.info("gate %s: no new batch, skipped", stage)
        suites = []
    rows = _batch_rows(wh, batch_ids) if stage == "raw" and batch_ids else None
    results = run_suites(wh, stage, suites, lambda suite: suite_query(suite, params, batch_ids, rows))
    record_results(wh, stage, run_id, results)
    failures = [r for r in results if not r.success]
    log.info("gate %s: %d checks, %d failed", stage, len(results), len(failures))
    if failures and raise_on_failure:
        raise GateFailed(stage, failures)
    return results


def suite_query(suite: Suite, params: dict[str, str] | None, batch_ids: list[str] | None,
                rows: str | None = None) -> str:
    """A suite's query with its ``${placeholders}`` filled; for ``raw``, over the rows of ``batch_ids``
    only (``rows``: a predicate that selects them faster, from ``_batch_rows``)."""
    query = string.Template(suite.query).safe_substitute(params or {})
    if suite.stage != "raw":
        return query
    quoted = ", ".join("'" + b.replace("'", "''") + "'" for b in batch_ids or [])
    rows = rows or f"_batch_id in ({quoted or 'null'})"
    return f"select * from ({query}) as checked where {rows}"


def run_suites(wh: Warehouse, stage: str, suites: list[Suite], query_of) -> list[CheckResult]:
    """Run each suite with GX over the rows ``query_of(suite)`` selects (computed into a scratch
    table, dropped afterwards) and return every check's result, recording nothing. A raw suite
    whose query selects no rows has no verdict; a marts suite's verdict stands on no rows too."""
    if not suites:
        return []
    context = _context()
    datasource = context.data_sources.add_sql(name="warehouse", connection_string=wh.sqlalchemy_url())
    results: list[CheckResult] = []
    scratch: list[str] = []
    try:
        for suite_def in suites:
            # the marts' verdicts stand on empty results too (a row count of 0 fails its check)
            table = _materialize(wh, suite_def.name, query_of(suite_def), keep_empty=stage != "raw")
            if table is None:  # this batch brought nothing for the suite: no verdict to record
                log.info("gate %s: no rows of %s in the batch, skipped", stage, suite_def.name)
                continue
            scratch.append(table)
            _validate(context, datasource, stage, suite_def, results, table)
    finally:
        _drop(wh, scratch)
    return results


def _batch_rows(wh: Warehouse, batch_ids: list[str]) -> str:
    """The predicate on a raw suite's rows (its ``_batch_id`` and ``_loaded_at`` columns) that keeps
    the batches under check. Every row of a batch carries its attempt's one load time
    (crm360.ingest.ledger), so the load times bound the scan to the blocks those attempts wrote
    (the raw tables' BRIN index on ``_loaded_at``); on ``_batch_id`` alone, which has no index,
    each suite read its raw table whole every day."""
    quoted = ", ".join("'" + b.replace("'", "''") + "'" for b in batch_ids)
    with wh.connect() as conn:
        known = dict(conn.execute("select batch_id, loaded_at from audit.load_attempts where batch_id = any(%s)",
                                  (list(batch_ids),)).fetchall())
    if set(batch_ids) - set(known):  # a batch the ledger does not know: by batch id alone
        return f"_batch_id in ({quoted})"
    times = ", ".join(f"'{t.isoformat()}'::timestamptz" for t in sorted(set(known.values())))
    return f"_loaded_at in ({times}) and _batch_id in ({quoted})"


def _materialize(wh: Warehouse, name: str, query: str, keep_empty: bool = False) -> str | None:
    """A suite's rows, computed once into a scratch table; None if none (unless ``keep_empty``).

    Every expectation GX runs is a query of its own over the asset: over the raw JSON of a
    history's web events, each of them would extract the fields of ten million records again."""
    table = f"{SCRATCH}._gate_{re.sub(r'[^a-z0-9_]', '_', name.lower())}_{uuid.uuid4().hex[:8]}"
    with wh.connect() as conn:
        # The planner prices each row's expressions (JSON fields, patterns, casts) as nearly free and
        # passing a row between processes as dear, so it scans the history in one process; told
        # that passing rows costs nothing, it computes them in parallel workers, twice as fast on 2 cores.
        conn.execute("set local parallel_tuple_cost = 0")
        rows = conn.execute(f"create unlogged table {table} as {query}").rowcount  # noqa: S608 - suite from the repo
        if not rows and not keep_empty:
            conn.rollback()
            return None
        conn.commit()
    return table


def _drop(wh: Warehouse, tables: list[str]) -> None:
    if tables:
        with wh.connect(autocommit=True) as conn:
            for table in tables:
                conn.execute(f"drop table if exists {table}")


def _validate(context, datasource, stage: str, suite_def: Suite, results: list[CheckResult], table: str) -> None:
    """Run one suite over its scratch ``table`` with GX; append its checks to ``results``.

    The table is a table asset: GX reads its columns from the catalog, where for a query asset
    it runs the query once to learn them, fetching every row into this process. Offending rows
    are sampled by the suite's key only when a check failed: asking GX for them up front
    doubles the queries of every check, passing or not."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    schema, name = table.split(".")
    asset = datasource.add_table_asset(name=suite_def.name, table_name=name, schema_name=schema)
    batch = asset.add_batch_definition_whole_table("whole")

    def run(expectations: list[dict], by_key: bool, attempt: str):
        suite = context.suites.add(gx.ExpectationSuite(name=f"{suite_def.name}{attempt}"))
        for exp in expectations:
            config = ExpectationConfiguration(type=exp["type"], kwargs=exp.get("kwargs", {}))
            suite.add_expectation(config.to_domain_obj())
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{stage}:{suite_def.name}{attempt}", data=batch, suite=suite))
        result_format = {"result_format": "SUMMARY", "partial_unexpected_count": 10}
        if by_key:
            result_format["unexpected_index_column_names"] = list(suite_def.key)
        return validation.run(result_format=result_format).results

    outcome = run(suite_def.expectations, False, "")
    failed = [exp for exp in suite_def.expectations if any(_same(exp, item) and not item.success for item in outcome)]
    if failed and suite_def.key:  # the failed checks again, now sampling their rows by key
        again = run(failed, True, ":by_key")
        outcome = [next((new for exp in failed if _same(exp, item) for new in again if _same(exp, new)), item)
                   for item in outcome]
    for item in outcome:
        res = item.result or {}
        results.append(CheckResult(
            suite=suite_def.name,
            expectation=item.expectation_config.type,
            column=item.expectation_config.kwargs.get("column"),
            success=bool(item.success),
            unexpected_count=res.get("unexpected_count"),
            observed_value=None if res.get("observed_value") is None
            else str(res.get("observed_value")),
            sample=_sample(res),
        ))


def _same(exp: dict, item) -> bool:
    """Whether a GX result is the one of the suite's expectation ``exp`` (GX may add kwargs)."""
    config = item.expectation_config
    return config.type == exp["type"] and all(config.kwargs.get(k) == v for k, v in exp.get("kwargs", {}).items())


def _sample(result: dict) -> list:
    rows = result.get("partial_unexpected_index_list")
    if rows:
        return [{k: _plain(v) for k, v in row.items()} for row in rows if isinstance(row, dict)]
    return [_plain(v) for v in (result.get("partial_unexpected_list") or [])]


def _plain(value):
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def record_results(wh: Warehouse, stage: str, run_id: str, results: list[CheckResult]) -> None:
    now = datetime.now(UTC)
    with wh.connect() as conn:
        # appended: a re-run of the gate for the same run adds its verdict (checked_at tells them
        # apart; reports read the newest), the earlier one stays in the history
        with conn.cursor() as cur:
            cur.executemany(
                """insert into audit.gate_results (run_id, stage, suite, expectation, column_name,
                       success, unexpected_count, observed_value, sample, checked_at)
                   values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                [(run_id, stage, r.suite, r.expectation, r.column, r.success, r.unexpected_count,
                  r.observed_value, Jsonb(r.sample), now) for r in results],
            )
        conn.commit()
