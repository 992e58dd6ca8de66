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

import pendulum
from airflow.sdk import chain, dag, task
from crm360_airflow import SOURCES, TRANSFORM_STEPS, as_of_date, on_failure, params, raw_asset, step_task


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

    # the transform's steps as crm360.pipeline.steps declares them, in order
    as_of = run_date()
    chain(as_of, *(step_task(name)(as_of=as_of) for name in TRANSFORM_STEPS))


crm360_transform()
