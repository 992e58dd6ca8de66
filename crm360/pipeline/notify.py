"""Failure notifications (Airflow ``on_failure_callback``): a failed task records the run as failed
in ``audit.pipeline_runs``, writes the run-health page, and alerts (crm360.quality.alerts)."""

from __future__ import annotations

import logging

from crm360.quality.alerts import WEBHOOK_ENV, failure_message, post

log = logging.getLogger(__name__)

__all__ = ["WEBHOOK_ENV", "on_failure"]


def on_failure(dag_id: str, task_id: str, run_id: str, error: BaseException | str | None,
               as_of=None, wh=None) -> dict:
    """Record the failure in ``wh`` (the warehouse the task wrote to; None: nowhere to record it, for
    example an embedded server that is not running) and tell whoever is configured. Never raises."""
    from crm360.pipeline import run

    report = None
    if wh is None:
        log.warning("no running warehouse to record the failure of %s.%s in", dag_id, task_id)
    else:
        try:
            report = str(run.record_failure(wh, run_id, as_of, f"{task_id}: {error}"))
        except Exception:  # noqa: BLE001 - a broken warehouse must not hide the original failure
            log.exception("could not record the failure of %s.%s in the warehouse", dag_id, task_id)
    payload = failure_message(dag_id, task_id, run_id, str(error or ""), report)
    log.error(payload["text"] + (f" (report: {report})" if report else ""))
    post(payload)
    return payload
