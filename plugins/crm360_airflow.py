"""Glue between Airflow tasks and the crm360 package, kept out of the DAG files.

Nothing heavy is imported at module level: DAG files import this at parse time.
"""

from __future__ import annotations

from datetime import date

SOURCES = ("sales", "service", "web")


def raw_asset(source: str):
    """The Asset a source's gated raw batch updates."""
    from airflow.sdk import Asset

    return Asset(name=f"crm360_raw_{source}", uri=f"crm360://raw/{source}")


def as_of_date(context) -> date:
    """A transform run's as-of date: the newest 'as_of' in the triggering Asset events,
    else the data interval's end (manual and test runs), else the logical date."""
    found = []
    for events in (context.get("triggering_asset_events") or {}).values():
        for event in events:
            value = (getattr(event, "extra", None) or {}).get("as_of")
            if value:
                found.append(date.fromisoformat(value))
    if found:
        return max(found)
    moment = context.get("data_interval_end") or context.get("logical_date")
    if moment is None:
        raise ValueError("cannot tell the as-of date: no asset event, data interval or logical date")
    return moment.date()


def warehouse():
    """The warehouse named by the Airflow connection crm360_warehouse, else crm360's default."""
    from crm360_warehouse_hook import Crm360WarehouseHook

    from crm360.pipeline import resolve_warehouse

    return resolve_warehouse(Crm360WarehouseHook().get_url())


def run_step(step_name: str, *args):
    """Run ``crm360.pipeline.<step_name>(warehouse, *args)``.

    Bad data, failed gates, a wrong sources.yml and (when configured to fail)
    stale sources do not improve by waiting: they fail the task at once, without retries.
    A step that writes holds its part of the warehouse while it runs (crm360.locks); if
    another run holds it, the task fails with a message naming that run, and Airflow retries it.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from crm360 import locks, pipeline
    from crm360.freshness import StaleSources
    from crm360.gates import GateFailed
    from crm360.ingest import IngestError
    from crm360.sources import SourceConfigError

    step = getattr(pipeline, step_name)
    try:
        wh = warehouse()
        with locks.for_step(wh, step_name, args):
            return step(wh, *args)
    except (GateFailed, IngestError, StaleSources, SourceConfigError) as exc:
        raise AirflowFailException(str(exc)) from exc


def on_failure(context) -> None:
    """on_failure_callback: record the failed run, write its health page, alert."""
    from crm360 import notify

    ti = context["ti"]
    end = context.get("data_interval_end")
    notify.on_failure(ti.dag_id, ti.task_id, context["run_id"], context.get("exception"),
                      end.date() if end else None)
