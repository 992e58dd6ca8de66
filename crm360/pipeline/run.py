"""The pipeline's steps, callable from Airflow tasks, the CLI and tests alike.

    migrate -> ingest (per source) -> raw gate -> source freshness -> erasures -> dbt build
            -> marts gate -> publish -> summarize

dbt builds the marts into a schema readers cannot see; only when the marts gate
passes are they published (see crm360.transform.publish).

Each step is idempotent for a given run id: re-running it leaves the warehouse
as one run would.
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from crm360 import ingest
from crm360.core import schema
from crm360.core.errors import ConfigurationError
from crm360.core.settings import Settings, get_settings
from crm360.core.warehouse import Warehouse, from_url, get_warehouse
from crm360.ingest import ledger
from crm360.quality import freshness, gates, health
from crm360.serve import health_page, segments
from crm360.serve.report import RunSummary
from crm360.transform import day_tests, dbt, manifest, publish

if TYPE_CHECKING:  # the declaration imports this module, not the other way round
    from crm360.pipeline.steps import RunContext

log = logging.getLogger(__name__)



def marts(settings: Settings | None = None) -> tuple[str, ...]:
    """Every table dbt builds into the marts schema (the models under models/marts/, read from dbt's
    manifest): the summary counts them."""
    return manifest.load(settings).marts()


def counted_marts(settings: Settings | None = None) -> tuple[str, ...]:
    """The marts whose size follows the customer base, which a day's run does not halve or double
    (their YAML says ``row_count_gate: true``): the row-count gate compares each with its published
    version; history grows by the month, lists and summaries by design."""
    return manifest.load(settings).counted_marts()


def safe_run_id(run_id: str) -> str:
    """Airflow run ids contain ':' and '+'; keep batch ids readable and safe."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("_")[:120]


def resolve_warehouse(url: str | None = None, settings: Settings | None = None) -> Warehouse:
    """The warehouse a URL names (an Airflow connection's), else crm360's default."""
    return from_url(url) if url else get_warehouse(settings)


def migrate(wh: Warehouse) -> dict:
    """Bring the warehouse's schema to this code's revision (crm360.core.schema); a no-op when it is."""
    result = schema.migrate(wh)
    return {"before": result.before, "after": result.after, "applied": list(result.applied)}


def ingest_source(wh: Warehouse, source: str, run_id: str, landing: Path | None = None,
                  settings: Settings | None = None, until: date | None = None) -> dict:
    """Load the source's new or changed drops dated before ``until`` (all, if None), as the next
    attempt of the run (batch ``<run>.<n>:<source>``, crm360.ingest.ledger)."""
    settings = settings or get_settings()
    config = ingest.bindings(settings)
    if source not in config:  # a system the deployment does not have: nothing to load, nothing to gate
        log.info("source %s is not in the deployment's sources.yml: nothing to load", source)
        return {"source": source, "batch_ids": [], "skipped": "not configured in sources.yml"}
    result = ingest.load_source(wh, landing or settings.landing_dir, source, run_id=safe_run_id(run_id), until=until,
                                config=config)
    return result.as_dict()


def deployed_systems(settings: Settings | None = None) -> tuple[str, ...]:
    """The systems the deployment's sources.yml binds (checked: a bad file fails here, naming its entry)."""
    return tuple(ingest.bindings(settings or get_settings()))


def gate_params(wh: Warehouse, stage: str, as_of: date, settings: Settings | None = None) -> dict[str, str]:
    """Values for the ${placeholders} in the suites' queries."""
    params = {"as_of": as_of.isoformat(), "marts": publish.BUILD}
    bounds, lower = [], 0.0
    project_vars = dbt.project_vars(settings)
    for tier in project_vars["revenue_tiers"]:
        upper = round(lower + float(tier["share"]), 6)
        bounds.append(f"('{tier['tier']}', {lower}, {upper})")
        lower = upper
    params["revenue_tier_bounds"] = ", ".join(bounds)
    params["what_if_upgrade_share"] = repr(float(project_vars["what_if_upgrade_share"]))
    if stage == "marts":
        pairs = []
        with wh.connect() as conn:
            for mart in counted_marts(settings):
                build = conn.execute(f"select count(*) from {publish.BUILD}.{mart}").fetchone()[0]  # noqa: S608
                exists = conn.execute("select to_regclass(%s)", (f"{publish.PUBLISHED}.{mart}",)).fetchone()[0]
                published = (conn.execute(f"select count(*) from {publish.PUBLISHED}.{mart}").fetchone()[0]  # noqa: S608
                             if exists else None)
                pairs.append(f"('{mart}', {build}, {'null::bigint' if published is None else published})")
        params["row_count_pairs"] = ", ".join(pairs)
    return params


def gate(wh: Warehouse, stage: str, run_id: str, batch_ids: list[str] | None = None,
         settings: Settings | None = None, as_of: date | None = None) -> dict:
    """Run a gate; the marts gate checks the unpublished build schema."""
    if as_of is None:
        raise ValueError("a gate needs the run's as-of date")
    started = time.perf_counter()
    try:
        results = gates.run_gate(wh, stage, safe_run_id(run_id), batch_ids, settings=settings,
                                 params=gate_params(wh, stage, as_of, settings))
    except gates.GateFailed as exc:
        if stage == "raw":  # take the rejected attempts back out of raw (what they replaced comes back)
            ledger.unload(wh, batch_ids or [], str(exc).splitlines()[0])
        raise
    if stage == "raw":  # builds may read them now
        ledger.gated(wh, batch_ids or [])
    return {"stage": stage, "checks": len(results), "failed": sum(not r.success for r in results),
            "seconds": round(time.perf_counter() - started, 2)}


# The customer value models are fitted in Python between two dbt builds: the first
# builds their input and everything it depends on, the second all the rest. Tests
# are selected "cautiously" in both: a test runs in the first build only if every
# model it reads is built there, so a test reading models of both builds runs once,
# in the second, after all its models exist.
VALUE_INPUT = "+int_customer_purchase_summary"
# dbt unit tests check the models' logic on fixed rows, not the day's data: CI runs
# them (tests/test_dbt_unit_tests.py), a pipeline run does not. They also need the
# incremental models to exist already, which a first run cannot offer.
UNIT_TESTS = "test_type:unit"


def transform_stages() -> list[list[str]]:
    """The dbt build arguments of the two stages; together they run what one `dbt build` runs."""
    return [["build", "--select", VALUE_INPUT, "--exclude", UNIT_TESTS, "--indirect-selection", "cautious"],
            ["build", "--exclude", VALUE_INPUT, UNIT_TESTS, "--indirect-selection", "cautious"]]


# dbt's environment in a run: the marts go to the build schema (see crm360.transform.publish)
BUILD_ENV = {"CRM360_MARTS_BUILD_SCHEMA": publish.BUILD}


def build_env(as_of: date) -> dict[str, str]:
    """The environment of a run's dbt invocations: the build schema and the as-of date.

    The date goes in an env var, not in --vars (which the macro as_of_date() reads first, for
    hand-run builds): dbt re-parses the whole project when a var changes, i.e. every day,
    while a changed env var re-parses only the files that read it."""
    return {**BUILD_ENV, "CRM360_AS_OF_DATE": as_of.isoformat()}


def build_vars(settings: Settings | None = None) -> dict:
    """The vars of a run's dbt invocations, the same every day unless segments.yml, sources.yml or the
    overrides change: the deployment's overrides (CRM360_DBT_VARS) and reporting currency (sources.yml),
    which the Python steps read too, through crm360.transform.dbt.project_vars, and the segments.
    The segments are validated here, before anything is built: a bad segments.yml fails the run
    with its file, segment and reason."""
    return {**dbt.deployment_vars(settings), "segments": segments.dbt_var(segments.load(settings=settings))}


def build_steps(as_of: date, full_refresh: bool = False) -> list[dict]:
    """A run's build as crm360.transform.dbt.run_build runs it in one dbt process: the first stage,
    the customer value fit (crm360.transform.predictions), which reads the first stage's purchase
    summary and writes the predictions the second stage joins in, then the second stage.
    ``full_refresh`` rebuilds the incremental models from all of raw (what a day's build must equal)."""
    first, second = transform_stages()
    if full_refresh:
        first, second = [*first, "--full-refresh"], [*second, "--full-refresh"]
    return [{"dbt": first}, {"value_fit": as_of}, {"dbt": second}]


def transform(wh: Warehouse, as_of: date, settings: Settings | None = None, full_refresh: bool = False,
              run_id: str | None = None) -> dict:
    """dbt build (models, then their tests) with the marts going to the build schema, in two
    stages around the customer value fit, all in one dbt process that parses the project once
    (:func:`build_steps`). ``full_refresh`` rebuilds the incremental models from all of raw."""
    publish.reset_build(wh)
    run_vars = build_vars(settings)
    # while dbt reads raw, no load replaces a file under it; the build reads the gated loads below
    # each source's horizon, fixed here for the whole build (crm360.ingest.ledger)
    with ledger.reading_raw(wh):
        # a day's row-level tests on the incremental models read the rows after the last passing
        # build's marks (crm360.transform.day_tests); taken out now, written again if all pass
        marks = day_tests.take_marks(wh, settings, full_refresh)
        env = {**build_env(as_of), "CRM360_LOAD_HORIZONS": ledger.horizons_json(wh), day_tests.ENV: json.dumps(marks)}
        built = dbt.run_build(wh, build_steps(as_of, full_refresh), run_vars, settings=settings, extra_env=env)
    day_tests.record_marks(wh, run_id or f"as_of_{as_of.isoformat()}", settings)
    results, fit = built.results, built.value_fit
    check_personal_data(wh, settings)
    statuses: dict[str, int] = {}
    for r in results:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    seconds = {name: round(s, 2) for name, s in _node_seconds(results, "model").items()}
    tests = _node_seconds(results, "test")
    # the data tests' own seconds, summed (dbt runs several nodes at a time: a share, not wall time)
    test_seconds = round(sum(tests.values()), 2)
    tests = {name: round(s, 2) for name, s in tests.items()}
    return {"nodes": len(results), "statuses": statuses, "value_model": fit, "tests_after": marks,
            "build_seconds": built.seconds,
            "slowest_models": dict(list(seconds.items())[:10]), "model_seconds": seconds,
            "test_seconds": test_seconds, "slowest_tests": dict(list(tests.items())[:10])}


class PersonalDataUntagged(ConfigurationError):
    """A column named like personal data carries no pii tag, or a table with personal data cannot
    be erased from: the build is not published, since a deletion request would miss it."""


def check_personal_data(wh: Warehouse, settings: Settings | None = None) -> None:
    """Refuse a build in which personal data would escape erasure (crm360.transform.manifest): the
    built tables' columns are compared with the project's pii tags."""
    with wh.connect() as conn:
        problems = manifest.check_personal_data(conn, settings, build_schema=publish.BUILD)
    if problems:
        raise PersonalDataUntagged(f"{len(problems)} place(s) where personal data would escape erasure "
                                   "(docs/privacy.md, tagging personal data):\n" + "\n".join(problems))


def _node_seconds(results: list[dict], kind: str) -> dict[str, float]:
    """{name: seconds of its own} of the dbt nodes of one kind ("model", "test"), slowest first.
    The name is the third part of the unique id (a generic test's fourth part is a hash)."""
    nodes = sorted((r for r in results if (r["unique_id"] or "").startswith(f"{kind}.")),
                   key=lambda r: -(r.get("execution_time") or 0))
    return {r["unique_id"].split(".")[2]: r.get("execution_time") or 0 for r in nodes}


def check_freshness(wh: Warehouse, run_id: str, as_of: date | None = None, settings: Settings | None = None) -> dict:
    """Source freshness of the bound systems against dbt's thresholds, computed in the warehouse
    (crm360.quality.freshness: no dbt process); stops the run only if freshness_action is 'fail'."""
    action = dbt.project_vars(settings).get("freshness_action", "warn")
    systems = deployed_systems(settings)
    results = freshness.check(wh, safe_run_id(run_id), action=action, settings=settings, systems=systems)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return {"action": action, "statuses": counts, "systems": list(systems)}


def record_status(wh: Warehouse, run_id: str, as_of: date | None, status: str, message: str | None = None,
                  summary: dict | None = None) -> None:
    """Append the run's status to its history (audit.pipeline_run_history; audit.pipeline_runs shows
    each run's latest): a later attempt of the same run never overwrites an earlier one's record."""
    with wh.connect() as conn:
        conn.execute(
            """insert into audit.pipeline_run_history (run_id, as_of_date, status, summary, recorded_at)
               values (%s, %s, %s, %s, %s)""",
            (run_id, as_of, status, json.dumps(summary or {"message": message}), datetime.now(UTC)))
        conn.commit()


def erase(wh: Warehouse, run_id: str, settings: Settings | None = None) -> dict:
    """Apply deletion requests (crm360.privacy) before dbt reads raw: a forgotten person is
    removed from every layer and from the exports in the export folder by this run, and rows
    loaded since are cleaned of them."""
    from crm360 import privacy
    from crm360.quality import alerts

    try:
        result = privacy.apply_erasures(wh, safe_run_id(run_id), settings)
    except Exception as exc:
        exc.add_note("in the erasure step (apply_erasures): no deletion request was applied")
        raise
    if result["attention"]:  # the run goes on (other requests were applied), but a person must look
        alerts.attention(safe_run_id(run_id), result["attention"])
    return result


def publish_marts(wh: Warehouse, run_id: str) -> dict:
    """Swap the gated build in as the marts BI reads; record the segment sizes it published."""
    tables = publish.publish(wh, safe_run_id(run_id))
    return {"published": tables, "segments": segments.record_sizes(wh, safe_run_id(run_id))}


def summarize(wh: Warehouse, run_id: str, as_of: date, status: str = "success",
              settings: Settings | None = None) -> RunSummary:
    """Collect what the run built, record it in audit.pipeline_runs and a JSON report."""
    settings = settings or get_settings()
    rid = safe_run_id(run_id)
    summary = RunSummary(run_id=rid, as_of_date=as_of.isoformat())
    with wh.connect() as conn:
        for mart in marts(settings):
            summary.mart_rows[mart] = conn.execute(
                f"select count(*) from marts.{mart}"  # noqa: S608 - fixed names
            ).fetchone()[0]
        if conn.execute("select to_regclass('marts.reporting_currency') is not null").fetchone()[0]:
            summary.currency = conn.execute("select currency_code from marts.reporting_currency").fetchone()[0]
        summary.pyramid = [_jsonable(r) for r in health.fetch_dicts(conn, """
            select pyramid, tier, customers, revenue, share_of_customers, share_of_revenue
            from marts.customer_pyramid_summary where is_current order by pyramid, tier_order""")]
        summary.lifecycle = [_jsonable(r) for r in health.fetch_dicts(conn, """
            select lifecycle_stage, count(*) as customers, sum(revenue) as revenue
            from marts.customer_360 group by lifecycle_stage order by customers desc""")]
        summary.rules_of_thumb = [_jsonable(r) for r in health.fetch_dicts(conn, """
            select rule_number, measure, rule, measured_value, expected_low, expected_high, holds
            from marts.customer_rules_of_thumb order by rule_number, measure""")]
        summary.upgrade_what_if = [_jsonable(r) for r in health.fetch_dicts(conn, """
            select variant, from_tier, to_tier, is_total, customers_moved, uplift_mean_share, uplift_median_share,
                   observed_moves, observed_change_share
            from marts.customer_upgrade_what_if order by variant_order, is_total, from_tier_rank desc""")]
        summary.tier_movements = [_jsonable(r) for r in health.fetch_dicts(conn, """
            select snapshot_date, previous_snapshot_date, pyramid, from_tier, to_tier, movement, customers
            from marts.customer_tier_movements where is_current
            order by pyramid, from_tier nulls last, to_tier""")]
        if conn.execute("select to_regclass('marts.segments') is not null").fetchone()[0]:
            summary.segments = [_jsonable(r) for r in health.fetch_dicts(conn, """
                select segment_name, description, version, customers, contactable_customers, as_of_date
                from marts.segments order by segment_name""")]
        summary.gates = health.gate_summary(conn, rid)
        summary.erasures = health.erasures(conn, rid)
        summary.loads = [_jsonable(r) for r in health.fetch_dicts(conn, """
            with loaded as (
                select source, count(*) as files, sum(row_count)::bigint as rows from audit.load_files group by source
            ),
            quarantined as (select source, count(*) as n from raw._quarantine group by source)
            select loaded.source, loaded.files, loaded.rows, coalesce(quarantined.n, 0)::bigint as quarantined
            from loaded left join quarantined on loaded.source = quarantined.source
            order by loaded.source""")]
    recorded = health.record(wh, rid, as_of, status, summary=summary.as_dict())
    summary.report = str(health_page.write(rid, as_of, status, None, recorded, settings))
    record_status(wh, rid, as_of, status, summary=summary.as_dict())
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    report = settings.reports_dir / f"run_{rid}.json"
    report.write_text(json.dumps(summary.as_dict(), indent=2) + "\n", encoding="utf-8")
    (settings.reports_dir / "latest.json").write_text(report.read_text(), encoding="utf-8")
    return summary


def _jsonable(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if hasattr(v, "is_finite"):  # Decimal
            out[k] = float(v)
        elif isinstance(v, (date, datetime)):
            out[k] = v.isoformat()
        else:
            out[k] = v
    return out


# -- the steps as crm360.pipeline.steps declares them: (warehouse, context) -> a JSON-able result

def migrate_step(wh: Warehouse, ctx: RunContext) -> dict:
    return migrate(wh)


def load_step(wh: Warehouse, ctx: RunContext) -> dict:
    loaded = ingest_source(wh, ctx.source, ctx.run_id, ctx.landing, ctx.settings, until=ctx.as_of)
    return {**loaded, "as_of": ctx.as_of.isoformat() if ctx.as_of else None}


def gate_raw_step(wh: Warehouse, ctx: RunContext) -> dict:
    return gate(wh, "raw", ctx.run_id, list(ctx.batch_ids), ctx.settings, ctx.as_of)


def freshness_step(wh: Warehouse, ctx: RunContext) -> dict:
    return check_freshness(wh, ctx.run_id, ctx.as_of, ctx.settings)


def erase_step(wh: Warehouse, ctx: RunContext) -> dict:
    return erase(wh, ctx.run_id, ctx.settings)


def transform_step(wh: Warehouse, ctx: RunContext) -> dict:
    return transform(wh, ctx.as_of, ctx.settings, run_id=safe_run_id(ctx.run_id))


def gate_marts_step(wh: Warehouse, ctx: RunContext) -> dict:
    return gate(wh, "marts", ctx.run_id, settings=ctx.settings, as_of=ctx.as_of)


def publish_step(wh: Warehouse, ctx: RunContext) -> dict:
    return publish_marts(wh, ctx.run_id)


def summarize_step(wh: Warehouse, ctx: RunContext) -> dict:
    return summarize(wh, ctx.run_id, ctx.as_of, settings=ctx.settings).as_dict()


def record_failure(wh: Warehouse, run_id: str, as_of: date | None, message: str,
                   settings: Settings | None = None) -> Path:
    """Mark the run failed in audit.pipeline_runs and write its health page; returns the page."""
    rid = safe_run_id(run_id)
    record_status(wh, rid, as_of, "failed", message)
    recorded = health.record(wh, rid, as_of, "failed", message)
    return health_page.write(rid, as_of, "failed", message, recorded, settings)
