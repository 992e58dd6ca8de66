"""
### crm360 ingest: one DAG per source

`crm360_ingest_<source>` brings the warehouse's schema up to date (`crm360 migrate`: a
no-op when it is; DAGs starting together take turns on its lock), loads the source's new or
changed drops dated before the run's as-of date into `raw` (COPY, one transaction per file,
malformed records quarantined), then gates that batch. Only a gated batch updates the source's
Asset, `crm360://raw/<source>`, which schedules `crm360_transform`.

The as-of date: the `as_of` parameter ("Trigger DAG w/ config"), else a manual run's logical
date, else the data interval's end, else (a manual run without a logical date) the day it ran.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task
from crm360_airflow import SOURCES, on_failure, params, raw_asset, run_date, run_step


def ingest_dag(source: str, asset: Asset):
    @dag(
        dag_id=f"crm360_ingest_{source}",
        schedule="@daily",
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        params=params(),
        tags=["crm360", "ingest", source],
        default_args={"owner": "data-engineering", "retries": 2, "retry_delay": pendulum.duration(seconds=30),
                      "on_failure_callback": on_failure},
        doc_md=__doc__,
    )
    def ingest_source():
        @task
        def migrate_warehouse() -> dict:
            """Apply the schema migrations the warehouse lacks (crm360 migrate), under their lock."""
            return run_step("migrate")

        @task
        def load(**context) -> dict:
            """COPY new or changed drops dated before the as-of date into raw, as one attempt (batch)."""
            as_of = run_date(context)
            loaded = run_step("ingest_source", source, context["run_id"], None, None, as_of)
            return {"batch_ids": loaded["batch_ids"], "as_of": as_of.isoformat()}

        @task(outlets=[asset])
        def gate_raw(batch: dict, run_id: str | None = None, outlet_events=None) -> dict:
            """Great Expectations suites on the batch; a failure unloads it. Passing updates the Asset."""
            from datetime import date

            result = run_step("gate", "raw", run_id, batch["batch_ids"], None, date.fromisoformat(batch["as_of"]))
            outlet_events[asset].extra = batch
            return result

        batch = load()
        migrate_warehouse() >> batch
        gate_raw(batch)

    return ingest_source()


for name in SOURCES:
    ingest_dag(name, raw_asset(name))
