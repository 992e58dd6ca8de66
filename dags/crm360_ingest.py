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
from airflow.sdk import Asset, dag
from crm360_airflow import SOURCES, on_failure, params, raw_asset, step_task


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
        # the ingest steps as crm360.pipeline.steps declares them
        loaded = step_task("load")(source=source)
        step_task("migrate_warehouse")() >> loaded
        step_task("gate_raw", outlets=[asset])(loaded)

    return ingest_source()


for name in SOURCES:
    ingest_dag(name, raw_asset(name))
