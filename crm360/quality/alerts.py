"""Alerts: a JSON message to ``CRM360_ALERT_WEBHOOK`` (a chat or incident tool's incoming
webhook), and the error log, for a failed task and for what needs a person though the run went on
(a deletion request that found nobody or was refused)."""

from __future__ import annotations

import json
import logging
import urllib.request
from datetime import UTC, datetime

from crm360.core.settings import Settings, alert_webhook

log = logging.getLogger(__name__)

WEBHOOK_ENV = Settings.env_name("alert_webhook")


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


def post(payload: dict) -> None:
    """POST ``payload`` to the configured webhook, if one is. Never raises."""
    url = alert_webhook()  # even when another setting is bad: that may be what the alert is about
    if url:
        try:
            post_webhook(url, payload)
        except Exception:  # noqa: BLE001 - an alert that cannot be sent must not fail the run
            log.exception("could not post to %s", WEBHOOK_ENV)


def attention(run_id: str, lines: list[str]) -> dict:
    """Tell whoever is configured what needs a person though the run went on. Never raises."""
    payload = {"text": f"crm360: run {run_id} needs attention: " + " | ".join(lines), "run_id": run_id,
               "attention": lines, "at": datetime.now(UTC).isoformat()}
    for line in lines:
        log.error("run %s needs attention: %s", run_id, line)
    post(payload)
    return payload
