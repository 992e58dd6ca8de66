"""Glue between Airflow tasks and the crm360 package, kept out of the DAG files.

Nothing heavy is imported at module level: DAG files import this at parse time.
"""

from __future__ import annotations

from datetime import date

from crm360.core.settings import get_settings  # these three import nothing heavy: cheap at parse time
from crm360.core.systems import deployed, sources_file
from crm360.pipeline.steps import TRANSFORM

# one ingest DAG per source system the deployment's sources.yml binds (a file read, no database):
# the transform waits for the Assets of these only, so a sales-only deployment is still triggered
SOURCES = deployed(sources_file(get_settings().project_dir))
TRANSFORM_STEPS = tuple(step.name for step in TRANSFORM)  # the transform DAG's tasks, in order

AS_OF_HELP = ("Load the drops dated before this day and compute tiers as of it (YYYY-MM-DD). Empty: the "
              "run's logical date if one was given, else the day the run was triggered (UTC), i.e. every "
              "drop dated before today.")


def raw_asset(source: str):
    """The Asset a source's gated raw batch updates."""
    from airflow.sdk import Asset

    return Asset(name=f"crm360_raw_{source}", uri=f"crm360://raw/{source}")


def params():
    """The DAGs' run parameters, shown by the UI's "Trigger DAG w/ config" form."""
    from airflow.sdk import Param

    return {"as_of": Param(None, type=["null", "string"], format="date", title="As of", description=AS_OF_HELP)}


def _param_date(context) -> date | None:
    from crm360.core.errors import ConfigurationError

    value = (context.get("params") or {}).get("as_of")
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ConfigurationError(f"run parameter as_of: not a date (YYYY-MM-DD): {value!r}") from None


def run_date(context) -> date:
    """The as-of date of an ingest run however it was started: the ``as_of`` parameter if given;
    else a manual run's logical date, if it was given one (Airflow 3 derives a manual run's data
    interval from the moment it was triggered, not from its logical date); else the data
    interval's end (scheduled and backfilled runs); else the day the run was triggered (a manual
    run without a logical date): the drops dated before it are loaded, as the scheduled run of
    that day would."""
    given = _param_date(context)
    if given is not None:
        return given
    run = context.get("dag_run")
    run_type = getattr(getattr(run, "run_type", None), "value", getattr(run, "run_type", None))
    order = ("logical_date", "data_interval_end") if run_type == "manual" else ("data_interval_end", "logical_date")
    for key in order:
        moment = context.get(key)
        if moment is not None:
            return moment.date()
    moment = getattr(run, "run_after", None)
    if moment is None:
        from crm360.core.errors import ConfigurationError

        raise ConfigurationError("cannot tell the run's as-of date: no as_of parameter, data interval, logical "
                                 "date or trigger time")
    return moment.date()


def as_of_date(context) -> date:
    """A transform run's as-of date: the ``as_of`` parameter if given; else the newest 'as_of' of the
    triggering Asset events (the ingest runs' dates); else as :func:`run_date`."""
    given = _param_date(context)
    if given is not None:
        return given
    found = []
    for events in (context.get("triggering_asset_events") or {}).values():
        for event in events:
            value = (getattr(event, "extra", None) or {}).get("as_of")
            if value:
                found.append(date.fromisoformat(value))
    if found:
        return max(found)
    return run_date(context)


def warehouse_url() -> str | None:
    """The URL of the Airflow connection crm360_warehouse, or None when it is not defined."""
    from crm360_warehouse_hook import Crm360WarehouseHook

    return Crm360WarehouseHook().get_url()


def warehouse():
    """The warehouse named by the Airflow connection crm360_warehouse, else crm360's default."""
    from crm360.pipeline import resolve_warehouse

    return resolve_warehouse(warehouse_url())


def run_step(name: str, run_id: str, **fields):
    """Run the pipeline's step ``name`` (crm360.pipeline.steps) for the Airflow run ``run_id``, with
    the rest of its context (as_of, source, batch_ids) given as keywords.

    The step checks the warehouse's schema revision (but the migration) and holds the parts of the
    warehouse it writes (crm360.core.locks). An error no retry can mend (bad data, a failed gate, a
    wrong configuration or parameter, a warehouse that needs ``crm360 migrate``, a bug) fails the
    task at once, without retries; what may pass a moment later (a run lock held by another run, a
    lost connection) is raised as it is, for Airflow to retry (crm360.core.errors.is_retryable).
    """
    from airflow.sdk.exceptions import AirflowFailException

    from crm360.core.errors import is_retryable
    from crm360.pipeline import steps

    try:
        return steps.execute(name, warehouse(), steps.RunContext(run_id, **fields))
    except Exception as exc:
        if is_retryable(exc):
            raise
        raise AirflowFailException(f"{exc.__class__.__name__}: {exc}" if not str(exc) else str(exc)) from exc


def step_task(name: str, **task_args):
    """A TaskFlow task running the declared step ``name`` (its task id, its doc). Its context: the
    run's id; the as-of date from ``as_of`` (an upstream task's) or the run's own (run_date); the
    batches of an upstream load; ``source`` for a per-source step. A task with outlets (a raw gate)
    puts the batches and the date on its Asset events, for the transform they schedule."""
    from airflow.sdk import task

    from crm360.pipeline.steps import get

    step = get(name)

    def call(upstream: dict | None = None, as_of: str | None = None, source: str | None = None, **context):
        upstream = upstream or {}
        day = as_of or upstream.get("as_of")
        fields = {"as_of": date.fromisoformat(day) if day else run_date(context), "source": source,
                  "batch_ids": tuple(upstream.get("batch_ids") or ())}
        result = run_step(name, context["run_id"], **fields)
        for asset in getattr(context.get("task"), "outlets", None) or ():
            context["outlet_events"][asset].extra = {"batch_ids": list(fields["batch_ids"]),
                                                     "as_of": fields["as_of"].isoformat()}
        if name == "summarize":
            _print_report(result)
        return result

    call.__doc__ = step.doc
    call.__name__ = name
    return task(task_id=name, doc_md=step.doc, **task_args)(call)


def _print_report(summary: dict) -> None:
    from crm360.serve import report
    from crm360.serve.report import RunSummary

    print(report.render(RunSummary(**summary), warehouse()))
    print(f"Run health report: {summary.get('report')}")


def on_failure(context) -> None:
    """on_failure_callback: record the failed run where the task wrote, write its health page, alert.

    The warehouse is the task's own (the Airflow connection, else CRM360_WAREHOUSE_URL, else the
    embedded server if it is running): a callback never starts a server to record a failure in."""
    from crm360.core.settings import get_settings
    from crm360.core.warehouse import configured, running_embedded
    from crm360.pipeline import notify

    ti = context["ti"]
    try:
        as_of = run_date(context)
    except Exception:  # noqa: BLE001 - a bad parameter is the failure being recorded
        as_of = None
    try:
        wh = configured(url=warehouse_url()) or running_embedded(get_settings())
    except Exception:  # noqa: BLE001 - the alert still goes out
        wh = None
    notify.on_failure(ti.dag_id, ti.task_id, context["run_id"], context.get("exception"), as_of, wh=wh)
