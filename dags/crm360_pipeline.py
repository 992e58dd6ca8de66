"""
### crm360 pipeline

Daily: load new source drops into `raw`, gate them, build the dbt project into
a schema readers cannot see, gate it, publish it as `marts` in one transaction,
record a run summary. Tiers are computed as of the data
interval's end. Every task is idempotent; a failed quality gate fails the run
at once (no retry: bad data does not get better by waiting).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, task

SOURCES = ("sales", "service", "web")


def _warehouse():
    from crm360_warehouse_hook import Crm360WarehouseHook

    from crm360.pipeline import resolve_warehouse

    return resolve_warehouse(Crm360WarehouseHook().get_url())


def _no_retry(step, *args):
    """Bad data and failed gates do not improve by waiting: fail without retrying."""
    from airflow.sdk.exceptions import AirflowFailException

    from crm360.gates import GateFailed
    from crm360.ingest import IngestError

    try:
        return step(_warehouse(), *args)
    except (GateFailed, IngestError) as exc:
        raise AirflowFailException(str(exc)) from exc


@dag(
    dag_id="crm360_pipeline",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["crm360", "warehouse"],
    default_args={"owner": "data-engineering", "retries": 2,
                  "retry_delay": pendulum.duration(seconds=30)},
    doc_md=__doc__,
)
def crm360_pipeline():
    @task
    def prepare_warehouse() -> None:
        """Create schemas, raw tables and audit tables if missing."""
        from crm360 import pipeline

        pipeline.prepare(_warehouse())

    @task
    def ingest(source: str, run_id: str | None = None) -> str:
        """COPY the source's new or changed files into raw; returns the batch id."""
        from crm360 import pipeline

        return _no_retry(pipeline.ingest_source, source, run_id)["batch_id"]

    @task
    def gate_raw(batch_ids: list[str], run_id: str | None = None, data_interval_end=None) -> dict:
        """Great Expectations suites on the batches just loaded."""
        from crm360 import pipeline

        return _no_retry(pipeline.gate, "raw", run_id, list(batch_ids), None, data_interval_end.date())

    @task
    def dbt_build(data_interval_end=None) -> dict:
        """dbt build (models and their tests) as of the data interval's end."""
        from crm360 import pipeline

        return pipeline.transform(_warehouse(), data_interval_end.date())

    @task
    def gate_marts(run_id: str | None = None, data_interval_end=None) -> dict:
        """Great Expectations suites on the built, not yet published marts."""
        from crm360 import pipeline

        return _no_retry(pipeline.gate, "marts", run_id, None, None, data_interval_end.date())

    @task
    def publish() -> dict:
        """Swap the gated marts in for readers, in one transaction."""
        from crm360 import pipeline

        return pipeline.publish_marts(_warehouse(), get_current_context()["run_id"])

    @task
    def summarize(run_id: str | None = None, data_interval_end=None) -> dict:
        """Record rows per mart, the pyramid and gate results; log the report."""
        from crm360 import pipeline, report

        wh = _warehouse()
        summary = pipeline.summarize(wh, run_id, data_interval_end.date())
        print(report.render(summary, wh))
        return summary.mart_rows

    ready = prepare_warehouse()
    batches = [ingest.override(task_id=f"ingest_{s}")(source=s) for s in SOURCES]
    ready >> batches
    gate_raw(batches) >> dbt_build() >> gate_marts() >> publish() >> summarize()


crm360_pipeline()
