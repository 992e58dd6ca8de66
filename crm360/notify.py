"""Failure notifications (Airflow ``on_failure_callback``), and what needs a person though the run went on.

Every failed task records the run as failed in ``audit.pipeline_runs`` and
writes the run-health page. If ``CRM360_ALERT_WEBHOOK`` is set, a JSON message
is POSTed there too (a chat or incident tool's incoming webhook). A deletion
request that found nobody or was refused does not stop the run (the others
were applied), but is logged as an error and posted the same way.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from datetime import UTC, datetime

log = logging.getLogger(__name__)

WEBHOOK_ENV = "CRM360_ALERT_WEBHOOK"


def failure_message(dag_id: str, task_id: str, run_id: str, error: str, report: str | None) -> dict:
    first_line = (error or "").strip().splitlines()[0] if error else "unknown error"
    text = f"crm360: {dag_id}.{task_id} failed in run {run_id}: {first_line}"
    return {"text": text, "dag_id": dag_id, "task_id": task_id, "run_id": run_id, "error": error,
            "report": report, "failed_at": datetime.now(UTC).isoformat()}


def post_webhook(url: str, payload: dict, timeout: float = 10.0) -> int:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - configured URL
        return resp.status


def on_failure(dag_id: str, task_id: str, run_id: str, error: BaseException | str | None,
               as_of=None, wh=None) -> dict:
    """Record the failure in ``wh`` (the warehouse the task wrote to; None: nowhere to record it, for
    example an embedded server that is not running) and tell whoever is configured. Never raises."""
    from crm360 import pipeline

    report = None
    if wh is None:
        log.warning("no running warehouse to record the failure of %s.%s in", dag_id, task_id)
    else:
        try:
            report = str(pipeline.record_failure(wh, run_id, as_of, f"{task_id}: {error}"))
        except Exception:  # noqa: BLE001 - a broken warehouse must not hide the original failure
            log.exception("could not record the failure of %s.%s in the warehouse", dag_id, task_id)
    payload = failure_message(dag_id, task_id, run_id, str(error or ""), report)
    log.error(payload["text"] + (f" (report: {report})" if report else ""))
    url = os.environ.get(WEBHOOK_ENV)
    if url:
        try:
            post_webhook(url, payload)
        except Exception:  # noqa: BLE001
            log.exception("could not post the failure to %s", WEBHOOK_ENV)
    return payload


def attention(run_id: str, lines: list[str]) -> dict:
    """Tell whoever is configured what needs a person though the run went on. Never raises."""
    payload = {"text": f"crm360: run {run_id} needs attention: " + " | ".join(lines), "run_id": run_id,
               "attention": lines, "at": datetime.now(UTC).isoformat()}
    for line in lines:
        log.error("run %s needs attention: %s", run_id, line)
    url = os.environ.get(WEBHOOK_ENV)
    if url:
        try:
            post_webhook(url, payload)
        except Exception:  # noqa: BLE001
            log.exception("could not post to %s", WEBHOOK_ENV)
    return payload
