"""
### crm360 transform

Runs when every source's gated raw batch has arrived (the Assets
`crm360://raw/<source>`): checks source freshness, applies deletion requests
(the right to be forgotten), builds the dbt project into
a schema readers cannot see, gates it, publishes it as `marts` in one
transaction and records the run's health. Tiers are computed as of the `as_of`
parameter if given ("Trigger DAG w/ config"), else the newest `as_of` the ingest runs
reported, else the data interval's end or the day a manual run was triggered.
"""

from __future__ import annotations

from datetime import date

import pendulum
from airflow.sdk import dag, task
from crm360_airflow import SOURCES, as_of_date, on_failure, params, raw_asset, run_step, warehouse


@dag(
    dag_id="crm360_transform",
    schedule=[raw_asset(s) for s in SOURCES],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params=params(),
    tags=["crm360", "transform"],
    default_args={"owner": "data-engineering", "retries": 2, "retry_delay": pendulum.duration(seconds=30),
                  "on_failure_callback": on_failure},
    doc_md=__doc__,
)
def crm360_transform():
    @task
    def run_date(**context) -> str:
        """The as-of date: the as_of parameter, else the triggering Asset events, else the run's own date."""
        return as_of_date(context).isoformat()

    @task
    def source_freshness(as_of: str, run_id: str | None = None) -> dict:
        """dbt source freshness per source; fails the run only if configured to."""
        return run_step("check_freshness", run_id, date.fromisoformat(as_of))

    @task
    def apply_erasures(run_id: str | None = None) -> dict:
        """Remove people whose data must be forgotten from every layer, before dbt reads raw."""
        return run_step("erase", run_id)

    @task
    def dbt_build(as_of: str) -> dict:
        """dbt build (models, then their tests) into the unpublished marts schema."""
        return run_step("transform", date.fromisoformat(as_of))

    @task
    def gate_marts(as_of: str, run_id: str | None = None) -> dict:
        """Great Expectations suites on the built, not yet published marts."""
        return run_step("gate", "marts", run_id, None, None, date.fromisoformat(as_of))

    @task
    def publish(run_id: str | None = None) -> dict:
        """Swap the gated marts in for readers, in one transaction."""
        return run_step("publish_marts", run_id)

    @task
    def summarize(as_of: str, run_id: str | None = None) -> dict:
        """Record rows per mart, the pyramid, gate results and the health page; log them."""
        from crm360 import pipeline
        from crm360.serve import report

        wh = warehouse()
        summary = pipeline.summarize(wh, run_id, date.fromisoformat(as_of))
        print(report.render(summary, wh))
        print(f"Run health report: {summary.report}")
        return summary.mart_rows

    as_of = run_date()
    (source_freshness(as_of) >> apply_erasures() >> dbt_build(as_of) >> gate_marts(as_of) >> publish()
     >> summarize(as_of))


crm360_transform()
