"""Airflow hook naming the crm360 warehouse by connection id.

Define the connection ``crm360_warehouse`` (UI, CLI, or the env var
``AIRFLOW_CONN_CRM360_WAREHOUSE=postgresql://user:pass@host:5432/db``) to point
the DAGs at a server. Without it, crm360's own default applies:
``CRM360_WAREHOUSE_URL`` if set, else the embedded PostgreSQL.
"""

from __future__ import annotations

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException


class Crm360WarehouseHook(BaseHook):
    conn_name_attr = "crm360_conn_id"
    default_conn_name = "crm360_warehouse"
    conn_type = "postgres"
    hook_name = "crm360 warehouse"

    def __init__(self, crm360_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.crm360_conn_id = crm360_conn_id

    def get_url(self) -> str | None:
        """The connection's URL, or None to let crm360 choose (env var or embedded)."""
        try:
            conn = self.get_connection(self.crm360_conn_id)
        except AirflowNotFoundException:
            return None
        return conn.get_uri()

    def get_conn(self):
        from crm360.pipeline import resolve_warehouse

        return resolve_warehouse(self.get_url())
