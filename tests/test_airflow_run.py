"""The DAG run for real by the Airflow CLI (`airflow dags test`), on a local
SQLite metadata database and the embedded warehouse, as `crm360 demo` does."""

import json
from datetime import timedelta

import pytest
from conftest import make_settings

from crm360.core import warehouse
from crm360.pipeline import airflow_local
from crm360.synthetic.generate import GeneratorConfig, generate

pytestmark = [pytest.mark.airflow, pytest.mark.e2e, pytest.mark.timeout(1200)]  # airflow dags test, whole runs


@pytest.fixture
def airflow_project(tmp_path, monkeypatch):
    monkeypatch.delenv("CRM360_WAREHOUSE_URL", raising=False)
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    settings = make_settings(tmp_path / "home", tmp_path / "landing")
    world, manifest = generate(settings.landing_dir, GeneratorConfig.preset("tiny", seed=5))
    yield settings, world, manifest
    warehouse.stop_embedded(settings)


def test_dag_builds_the_marts_through_airflow(airflow_project):
    settings, world, manifest = airflow_project
    logical = world.end_date + timedelta(days=1)
    log_file = airflow_local.dags_test(logical, settings)
    text = log_file.read_text()
    for dag_id in airflow_local.PIPELINE_DAGS:
        assert f"dag_id={dag_id}" in text
    assert text.count("state=success, run_type=manual") >= 4
    wh = warehouse.get_warehouse(settings)
    with wh.connect() as conn:
        people, revenue = conn.execute(
            "select count(*), sum(revenue)::text from marts.customer_360"
        ).fetchone()
        [as_of] = conn.execute("select distinct as_of_date from marts.customer_pyramid").fetchone()
        status = conn.execute("select status from audit.pipeline_runs").fetchall()
    assert people == manifest["people"] and revenue == manifest["revenue"]
    assert as_of == logical  # tiers are computed as of the run's data interval end
    assert status == [("success",)]
    report = json.loads((settings.reports_dir / "latest.json").read_text())
    assert report["mart_rows"]["customer_360"] == manifest["people"]
    # the transform run's summary shows the raw gates its input passed in the ingest DAGs' runs
    raw = {g["suite"]: g for g in report["gates"] if g["stage"] == "raw"}
    assert {"raw_sales_orders", "raw_service_tickets", "raw_web_events"} <= set(raw)
    assert all(g["failed"] == 0 and g["run_id"] != report["run_id"] for g in raw.values())
    # each verdict comes from the ingest run that loaded that source, not from whichever ran last
    assert raw["raw_sales_orders"]["run_id"] != raw["raw_web_events"]["run_id"]
    assert {g["suite"] for g in report["gates"] if g["stage"] == "marts"} >= {"marts_customer_360"}


def test_unreadable_file_fails_ingest_without_retries(airflow_project):
    """A broken export fails the task at once: retrying cannot fix the file."""
    settings, world, _ = airflow_project
    orders = sorted(settings.landing_dir.glob("sales/*/orders.csv"))[-1]
    orders.write_text("order_id,ordered_at\nO_BAD,2026-10-01T10:00:00+00:00\n", encoding="utf-8")
    with pytest.raises(airflow_local.AirflowRunError, match="DAG crm360_ingest_sales did not succeed"):
        airflow_local.dags_test(world.end_date + timedelta(days=1), settings)
    text = (settings.airflow_home / f"dags_test_{world.end_date + timedelta(days=1)}.log").read_text()
    rel = orders.relative_to(settings.landing_dir).as_posix()
    assert f"{rel}: line 1: required column(s) missing: customer_id, status" in text
    assert "up_for_retry" not in text


def test_failed_gate_fails_the_dag_before_dbt(airflow_project):
    settings, world, _ = airflow_project
    orders = sorted(settings.landing_dir.glob("sales/*/orders.csv"))[-1]
    with open(orders, "a", encoding="utf-8") as fh:
        fh.write("O_BAD,C0000001,2026-10-01T10:00:00+00:00,teleported,EUR,web,,2026-10-01T10:00:00+00:00\n")
    with pytest.raises(airflow_local.AirflowRunError, match="DAG crm360_ingest_sales did not succeed"):
        airflow_local.dags_test(world.end_date + timedelta(days=1), settings)
    wh = warehouse.get_warehouse(settings)
    with wh.connect() as conn:
        marts = conn.execute(
            "select count(*) from information_schema.tables where table_schema = 'marts'"
        ).fetchone()[0]
        failed = conn.execute(
            "select suite, column_name from audit.gate_results where not success"
        ).fetchall()
    assert marts == 0, "dbt must not run after a failed raw gate"
    assert failed == [("raw_sales_orders", "status")]


def test_airflow_backfill_runs_load_each_interval_once(airflow_project):
    """What `airflow backfill create` schedules is one ingest run per past interval: each run
    loads exactly the drops of the days before its interval's end, and re-running an
    interval (a cleared task, a repeated backfill) loads nothing twice."""
    settings, world, manifest = airflow_project
    first = world.end_date - timedelta(days=1)
    for day in (first, world.end_date, first):  # the last one repeats the first interval
        airflow_local.dags_test(day, settings, dag_ids=("crm360_ingest_web",))
    wh = warehouse.get_warehouse(settings)
    with wh.connect() as conn:
        batches = conn.execute("""
            select split_part(batch_id, ':', 1) as run, count(*), min(source_file), max(source_file)
            from audit.load_files group by 1 order by 3""").fetchall()
        events = conn.execute("select count(*) from raw.web_events").fetchone()[0]
    assert len(batches) == 2, batches  # the repeated interval loaded no file
    (_, first_files, _, first_last), (_, second_files, second_first, second_last) = batches
    assert first_last < second_first == second_last  # the second run loaded exactly one more day
    assert first_files + second_files == len(list(settings.landing_dir.glob("web/events_*.jsonl"))) - 1
    last_day_events = sum(1 for _ in open(settings.landing_dir / "web" / f"events_{world.end_date}.jsonl"))
    assert events == manifest["web_events"] - last_day_events
