"""Run the DAGs through the real Airflow CLI on a local SQLite metadata database."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

from crm360.core.errors import Crm360Error
from crm360.core.settings import Settings, get_settings

log = logging.getLogger(__name__)



class AirflowRunError(Crm360Error):
    pass


def airflow_env(settings: Settings) -> dict[str, str]:
    home = settings.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags_dir),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.plugins_dir),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "CRM360_PROJECT_DIR": str(settings.project_dir),
        "CRM360_HOME": str(settings.home),
        "CRM360_LANDING_DIR": str(settings.landing_dir),
    })
    if settings.warehouse_url:
        env["CRM360_WAREHOUSE_URL"] = settings.warehouse_url
    else:
        env.pop("CRM360_WAREHOUSE_URL", None)
    # the plugins folder holds the warehouse hook the DAG imports
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(settings.plugins_dir), env.get("PYTHONPATH", "")) if p)
    return env


def airflow_executable() -> str:
    local = Path(sys.executable).with_name("airflow")
    return str(local) if local.exists() else (shutil.which("airflow") or "airflow")


def _run(args: list[str], env: dict[str, str], log_file: Path) -> subprocess.CompletedProcess:
    with open(log_file, "a", encoding="utf-8") as fh:
        fh.write(f"\n$ airflow {' '.join(args)}\n")
        fh.flush()
        return subprocess.run([airflow_executable(), *args], env=env, stdout=fh,
                              stderr=subprocess.STDOUT, check=False)


INGEST_DAGS = ("crm360_ingest_sales", "crm360_ingest_service", "crm360_ingest_web")
TRANSFORM_DAG = "crm360_transform"
PIPELINE_DAGS = (*INGEST_DAGS, TRANSFORM_DAG)


def dags_test(logical_date: date, settings: Settings | None = None,
              dag_ids: tuple[str, ...] = PIPELINE_DAGS) -> Path:
    """`airflow db migrate`, then `airflow dags test` for each DAG in order; returns the log file.

    The ingest DAGs run first, then the transform DAG they would trigger through
    their Assets (`dags test` runs no scheduler, so the trigger is explicit).
    Raises AirflowRunError naming the first DAG whose run did not succeed.
    """
    settings = settings or get_settings()
    env = airflow_env(settings)
    log_file = settings.airflow_home / f"dags_test_{logical_date.isoformat()}.log"
    log_file.write_text("", encoding="utf-8")
    if _run(["db", "migrate"], env, log_file).returncode != 0:
        raise AirflowRunError(f"airflow db migrate failed; see {log_file}")
    for dag_id in dag_ids:
        start = len(log_file.read_text(encoding="utf-8", errors="replace"))
        proc = _run(["dags", "test", dag_id, logical_date.isoformat()], env, log_file)
        text = log_file.read_text(encoding="utf-8", errors="replace")[start:]
        finished = [line for line in text.splitlines() if "DagRun Finished" in line]
        if proc.returncode != 0 or not finished or "state=success" not in finished[-1]:
            failed = [line for line in text.splitlines()
                      if "new_state=failed" in line or "Error" in line or "ERROR" in line]
            hint = "\n".join(failed[-10:])
            raise AirflowRunError(f"DAG {dag_id} did not succeed for {logical_date} "
                                  f"(exit {proc.returncode}); see {log_file}\n{hint}")
        log.info("DAG %s succeeded for %s", dag_id, logical_date)
    return log_file
