"""The pipeline: its steps declared once (steps), what each does (run), a whole run in one process
(runner: crm360 run, backfill), the failure callback (notify), and the DAGs through `airflow dags
test` (airflow_local).

The names below are the layer's API; the modules hold the rest. They are imported when first
used: Airflow reads the declaration (crm360.pipeline.steps) while it parses the DAG files, which
must not pull in the database drivers, dbt or Great Expectations."""

from importlib import import_module

_API = {
    "run": ("BUILD_ENV", "UNIT_TESTS", "VALUE_INPUT", "PersonalDataUntagged", "RunSummary", "build_env",
            "build_vars", "check_freshness", "check_personal_data", "counted_marts", "erase", "gate",
            "gate_params", "ingest_source", "marts", "migrate",
            "publish_marts", "record_failure", "record_status", "resolve_warehouse", "safe_run_id", "summarize",
            "transform", "transform_stages", "build_steps"),
    "runner": ("backfill", "ingest_all", "run_all"),
    "steps": ("INGEST", "TRANSFORM", "RunContext", "execute"),
}
_HOME = {name: module for module, names in _API.items() for name in names}

__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name in _HOME:
        value = getattr(import_module(f"crm360.pipeline.{_HOME[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'crm360.pipeline' has no attribute {name!r}")
