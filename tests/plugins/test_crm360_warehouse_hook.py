from crm360_warehouse_hook import Crm360WarehouseHook


def test_connection_from_env_var_names_the_server(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_CRM360_WAREHOUSE", "postgresql://etl:s3cret@db.internal:6432/dwh"
    )
    url = Crm360WarehouseHook().get_url()
    assert url.startswith("postgres") and "db.internal:6432/dwh" in url and "etl:s3cret@" in url


def test_other_conn_id(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_OTHER_WH", "postgresql://u:p@h:5432/d")
    assert "h:5432/d" in Crm360WarehouseHook("other_wh").get_url()


def test_without_connection_crm360_chooses(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_CRM360_WAREHOUSE", raising=False)
    assert Crm360WarehouseHook().get_url() is None


def test_get_conn_connects_to_the_named_server(monkeypatch, external_server, fresh_db):
    wh = fresh_db(external_server)
    url = f"postgresql://{wh.user}@{wh.host}:{wh.port}/{wh.dbname}"
    monkeypatch.setenv("AIRFLOW_CONN_CRM360_WAREHOUSE", url)
    resolved = Crm360WarehouseHook().get_conn()
    assert resolved.dbname == wh.dbname
    with resolved.connect() as conn:
        schemas = {
            r[0] for r in conn.execute("select schema_name from information_schema.schemata")
        }
    assert {"raw", "staging", "intermediate", "marts", "audit"} <= schemas
