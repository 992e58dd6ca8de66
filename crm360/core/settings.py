"""Where things live. Every path and endpoint comes from here, overridable by env vars.

CRM360_WAREHOUSE_URL  PostgreSQL URL of the warehouse; unset means the embedded server.
CRM360_PROJECT_DIR    the repository root (dbt project, expectations, dags); default: auto.
CRM360_HOME           local state: embedded database, Airflow home, reports; default .crm360/
CRM360_LANDING_DIR    where source systems drop their exports; default landing/
CRM360_EXPORT_DIR     where segment exports are written, the only files an erasure rewrites; default
                      CRM360_HOME/exports
CRM360_DBT_WORK_MEM   PostgreSQL work_mem for dbt's sessions; default 256MB (PGOPTIONS, if set, wins)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

WAREHOUSE_URL_ENV = "CRM360_WAREHOUSE_URL"


def _default_project_dir() -> Path:
    # crm360/core/settings.py -> repository root
    return Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Settings:
    project_dir: Path
    home: Path
    landing_dir: Path
    warehouse_url: str | None
    export_dir: Path | None = None  # None: under home

    @property
    def exports_dir(self) -> Path:
        """Segment exports are written here and nowhere else, so that an erasure can find every one
        crm360 wrote and rewrite it; it rewrites no file outside (crm360.privacy)."""
        return self.export_dir or self.home / "exports"

    @property
    def dbt_project_dir(self) -> Path:
        return self.project_dir / "dbt_project"

    @property
    def expectations_dir(self) -> Path:
        return self.project_dir / "expectations"

    @property
    def dags_dir(self) -> Path:
        return self.project_dir / "dags"

    @property
    def plugins_dir(self) -> Path:
        return self.project_dir / "plugins"

    @property
    def pgdata_dir(self) -> Path:
        return self.home / "pgdata"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def dbt_target_dir(self) -> Path:
        return self.home / "dbt" / "target"

    @property
    def dbt_vars_dir(self) -> Path:
        """The vars crm360 hands dbt, in files (crm360.transform.dbt.write_vars)."""
        return self.home / "dbt" / "vars"

    @property
    def dbt_log_dir(self) -> Path:
        return self.home / "dbt" / "logs"

    @property
    def dbt_work_mem(self) -> str:
        return os.environ.get("CRM360_DBT_WORK_MEM") or "256MB"


def get_settings() -> Settings:
    project = Path(os.environ.get("CRM360_PROJECT_DIR") or _default_project_dir()).resolve()
    home = Path(os.environ.get("CRM360_HOME") or project / ".crm360").resolve()
    landing = Path(os.environ.get("CRM360_LANDING_DIR") or project / "landing").resolve()
    url = os.environ.get(WAREHOUSE_URL_ENV) or None
    exports = os.environ.get("CRM360_EXPORT_DIR")
    return Settings(project_dir=project, home=home, landing_dir=landing, warehouse_url=url,
                    export_dir=Path(exports).resolve() if exports else None)
