"""
### crm360 ingest: one DAG per source

`crm360_ingest_<source>` loads the source's new or changed drops dated before
the data interval's end into `raw` (COPY, one transaction per file, malformed
records quarantined), then gates that batch. Only a gated batch updates the
source's Asset, `crm360://raw/<source>`, which schedules `crm360_transform`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task
from crm360_airflow import SOURCES, on_failure, raw_asset, run_step


def ingest_dag(source: str, asset: Asset):
    @dag(
        dag_id=f"crm360_ingest_{source}",
        schedule="@daily",
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        tags=["crm360", "ingest", source],
        default_args={"owner": "data-engineering", "retries": 2, "retry_delay": pendulum.duration(seconds=30),
                      "on_failure_callback": on_failure},
        doc_md=__doc__,
    )
    def ingest_source():
        @task
        def prepare_warehouse() -> None:
            """Create schemas, raw, quarantine and audit tables if missing."""
            run_step("prepare")

        @task
        def load(run_id: str | None = None, data_interval_end=None) -> str:
            """COPY new or changed drops into raw; returns the batch id."""
            return run_step("ingest_source", source, run_id, None, None, data_interval_end.date())["batch_id"]

        @task(outlets=[asset])
        def gate_raw(batch_id: str, run_id: str | None = None, data_interval_end=None, outlet_events=None) -> dict:
            """Great Expectations suites on this batch; a failure unloads it. Passing updates the Asset."""
            result = run_step("gate", "raw", run_id, [batch_id], None, data_interval_end.date())
            outlet_events[asset].extra = {"batch_id": batch_id, "as_of": data_interval_end.date().isoformat()}
            return result

        prepare_warehouse() >> gate_raw(load())

    return ingest_source()


for name in SOURCES:
    ingest_dag(name, raw_asset(name))
