"""The pipeline's steps and how they run: the steps one by one (for the Airflow tasks), a whole run
in one process (crm360 run, backfill), and the DAGs through `airflow dags test` (airflow_local).

The names below are the layer's API; the modules hold the rest."""

from crm360.pipeline.run import (
    BUILD_ENV,
    COUNTED_MARTS,
    MARTS,
    UNIT_TESTS,
    VALUE_INPUT,
    RunSummary,
    backfill,
    build_env,
    build_vars,
    check_freshness,
    erase,
    gate,
    gate_params,
    ingest_all,
    ingest_source,
    migrate,
    publish_marts,
    record_failure,
    record_status,
    resolve_warehouse,
    run_all,
    safe_run_id,
    summarize,
    transform,
    transform_stages,
)

__all__ = ["BUILD_ENV", "COUNTED_MARTS", "MARTS", "UNIT_TESTS", "VALUE_INPUT", "RunSummary", "backfill", "build_env",
           "build_vars", "check_freshness", "erase", "gate", "gate_params", "ingest_all", "ingest_source",
           "migrate", "publish_marts", "record_failure", "record_status", "resolve_warehouse", "run_all",
           "safe_run_id", "summarize", "transform", "transform_stages"]
