"""
### crm360 pipeline

Daily: load new source drops into `raw`, gate them, check source freshness,
build the dbt project into a schema readers cannot see, gate it, publish it as
`marts` in one transaction, record the run's health. Tiers are computed as of
the data interval's end. Every task is idempotent; a failed gate or bad file
fails the run at once (no retry: bad data does not get better by waiting).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from crm360_airflow import on_failure, run_step, warehouse

SOURCES = ("sales", "service", "web")


@dag(
    dag_id="crm360_pipeline",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["crm360", "warehouse"],
    default_args={"owner": "data-engineering", "retries": 2, "retry_delay": pendulum.duration(seconds=30),
                  "on_failure_callback": on_failure},
    doc_md=__doc__,
)
def crm360_pipeline():
    @task
    def prepare_warehouse() -> None:
        """Create schemas, raw tables and audit tables if missing."""
        run_step("prepare")

    @task
    def ingest(source: str, run_id: str | None = None) -> str:
        """COPY the source's new or changed files into raw; returns the batch id."""
        return run_step("ingest_source", source, run_id)["batch_id"]

    @task
    def gate_raw(batch_ids: list[str], run_id: str | None = None, data_interval_end=None) -> dict:
        """Great Expectations suites on the batches just loaded; a failure unloads them."""
        return run_step("gate", "raw", run_id, list(batch_ids), None, data_interval_end.date())

    @task
    def source_freshness(run_id: str | None = None, data_interval_end=None) -> dict:
        """dbt source freshness per source; fails the run only if configured to."""
        return run_step("check_freshness", run_id, data_interval_end.date())

    @task
    def dbt_build(data_interval_end=None) -> dict:
        """dbt build (models, then their tests) into the unpublished marts schema."""
        return run_step("transform", data_interval_end.date())

    @task
    def gate_marts(run_id: str | None = None, data_interval_end=None) -> dict:
        """Great Expectations suites on the built, not yet published marts."""
        return run_step("gate", "marts", run_id, None, None, data_interval_end.date())

    @task
    def publish(run_id: str | None = None) -> dict:
        """Swap the gated marts in for readers, in one transaction."""
        return run_step("publish_marts", run_id)

    @task
    def summarize(run_id: str | None = None, data_interval_end=None) -> dict:
        """Record rows per mart, the pyramid, gate results and the health page; log them."""
        from crm360 import pipeline, report

        wh = warehouse()
        summary = pipeline.summarize(wh, run_id, data_interval_end.date())
        print(report.render(summary, wh))
        print(f"Run health report: {summary.report}")
        return summary.mart_rows

    ready = prepare_warehouse()
    batches = [ingest.override(task_id=f"ingest_{s}")(source=s) for s in SOURCES]
    ready >> batches
    gate_raw(batches) >> source_freshness() >> dbt_build() >> gate_marts() >> publish() >> summarize()


crm360_pipeline()
