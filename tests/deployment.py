"""crm360 as it is deployed, shared by tests/test_deployment.py (the LocalExecutor) and
tests/test_deployment_celery.py (the CeleryExecutor, Redis and two workers that share no local
folder), two files so that the two runs may go to different test workers: a real Airflow 3
(api-server, scheduler, dag-processor, triggerer) with its metadata on the PostgreSQL server, the
DAGs unpaused on an empty warehouse database named by AIRFLOW_CONN_CRM360_WAREHOUSE.

Not `airflow dags test`: the scheduler decides what runs when, the three ingest DAGs start
side by side (on day one each of them applies the migrations, taking turns on the lock), the
transform runs when their Assets say so, and task processes talk to the api-server. What is
checked on each executor:

1. day one, scheduled: every task succeeds on its first try; the marts hold the generated
   customers and revenue to the cent;
2. a broken file, triggered by hand: its load fails once, without retries, and the failure is
   recorded in the configured warehouse (no embedded server is started anywhere);
3. day two, the three ingest DAGs triggered at the same moment without a logical date (the
   UI's Trigger button): every task's first try succeeds and exactly the new day's rows arrive;
4. (LocalExecutor) day three, triggered with a logical date, with the ``as_of`` parameter, and
   with a parameter that is no date (refused, not retried).

Every process is started in its own session and ended by its pid; none is left running.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, date, timedelta
from pathlib import Path

import psutil
import pytest
from airflow_stack import Stack
from conftest import SERVER_URL

from crm360.core import warehouse
from crm360.synthetic.generate import GeneratorConfig, generate, generate_next_day

# a whole Airflow deployment: `airflow db migrate` alone may take 10 minutes (airflow_stack.py)
MARKS = [pytest.mark.airflow, pytest.mark.deployment, pytest.mark.timeout(2400)]

SOURCES = ("sales", "service", "web")
INGEST = tuple(f"crm360_ingest_{s}" for s in SOURCES)
TRANSFORM = "crm360_transform"
REDIS_URL = os.environ.get("CRM360_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PRESET = "tiny"
SEED = 11
RUN_TIMEOUT = 900  # seconds a phase may take on a busy 2-core machine


def _require(what: str, error: Exception) -> None:
    if os.environ.get("CRM360_REQUIRE_SERVER") == "1":
        pytest.fail(f"{what} is required but unreachable: {error}")
    pytest.skip(f"no {what}: {error}")


def _redis_reachable() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        _require(f"Redis at {REDIS_URL}", exc)


@pytest.fixture
def databases():
    """An empty metadata database and an empty warehouse database on the test server."""
    try:
        server = warehouse.from_url(SERVER_URL)
        with server.connect():
            pass
    except Exception as exc:  # noqa: BLE001
        _require(f"PostgreSQL at {SERVER_URL}", exc)
    tag = uuid.uuid4().hex[:8]
    meta, wh = (warehouse.ensure_database(server, f"crm360_airflow_{tag}"),
                warehouse.ensure_database(server, f"crm360_deployed_{tag}"))
    yield meta, wh
    for db in (meta, wh):
        warehouse.drop_database(server, db.dbname)


def _url(wh: warehouse.Warehouse, driver: str = "") -> str:
    auth = wh.user + (f":{wh.password}" if wh.password else "")
    return f"postgresql{driver}://{auth}@{wh.host}:{wh.port}/{wh.dbname}"


def _file_rows(landing: Path, day: date) -> dict[str, int]:
    """Rows each raw table gets from one day's drops, counted from the files themselves."""
    d = day.isoformat()
    rows = {}
    for name in ("products", "customers", "orders", "order_lines"):
        path = landing / "sales" / d / f"{name}.csv"
        rows[f"sales_{name}"] = max(len(path.read_text(encoding="utf-8").splitlines()) - 1, 0) if path.exists() else 0
    tickets = landing / "service" / f"tickets_{d}.json"
    rows["service_tickets"] = len(json.loads(tickets.read_text(encoding="utf-8"))["tickets"]) if tickets.exists() else 0
    events = landing / "web" / f"events_{d}.jsonl"
    rows["web_events"] = sum(1 for line in events.read_text(encoding="utf-8").splitlines() if line.strip())
    return rows


def _raw_rows(wh: warehouse.Warehouse) -> dict[str, int]:
    with wh.connect() as conn:
        return {t: conn.execute(f"select count(*) from raw.{t}").fetchone()[0]  # noqa: S608 - fixed names
                for t in ("sales_products", "sales_customers", "sales_orders", "sales_order_lines",
                          "service_tickets", "web_events")}


def _marts(wh: warehouse.Warehouse) -> tuple[int, str]:
    with wh.connect() as conn:
        return conn.execute("select count(*), sum(revenue)::text from marts.customer_360").fetchone()


def _new_transform_run(stack: Stack, known: set[str]) -> dict | None:
    runs = [r for r in stack.dag_runs(TRANSFORM) if r["run_id"] not in known]
    return runs[-1] if runs and runs[-1]["state"] in ("success", "failed") else None


def _first_tries_only(stack: Stack, run_ids) -> int:
    """Every task of the runs succeeded, on its first try; returns the highest try number."""
    tis = stack.task_instances(run_ids)
    assert tis, f"no task instances for {run_ids}"
    bad = [t for t in tis if t["state"] != "success" or t["try_number"] != 1]
    assert not bad, f"tasks that failed or needed a retry: {bad}"
    return max(t["try_number"] for t in tis)


def _day_one(stack: Stack, wh, manifest: dict, figures: dict) -> set[str]:
    started = time.monotonic()
    stack.wait_parsed([*INGEST, TRANSFORM])
    transform = stack.wait_for(lambda: _new_transform_run(stack, set()), RUN_TIMEOUT, "day one's transform run")
    ingest_runs = [r for r in stack.dag_runs() if r["dag_id"] in INGEST]
    assert sorted(r["dag_id"] for r in ingest_runs) == sorted(INGEST)
    assert all(r["run_type"] == "scheduled" and r["state"] == "success" for r in ingest_runs), ingest_runs
    assert transform["state"] == "success", transform
    figures["day_one_seconds"] = round(time.monotonic() - started, 1)
    runs = [transform["run_id"], *{r["run_id"] for r in ingest_runs}]
    figures["day_one_highest_try"] = _first_tries_only(stack, runs)
    assert _marts(wh) == (manifest["people"], manifest["revenue"])
    return {transform["run_id"]}


def _broken_file(stack: Stack, wh, landing: Path, day: date) -> None:
    folder = landing / "sales" / day.isoformat()
    folder.mkdir()
    (folder / "orders.csv").write_text("order_id,ordered_at\nO_BROKEN,2026-11-01T10:00:00+00:00\n", encoding="utf-8")
    run_id = "manual__broken_file"
    stack.trigger("crm360_ingest_sales", run_id)
    [run] = stack.wait_for(lambda: stack.finished([run_id]), RUN_TIMEOUT, "the run with the broken file")
    assert run["state"] == "failed"
    load = next(t for t in stack.task_instances([run_id]) if t["task_id"] == "load")
    assert (load["state"], load["try_number"]) == ("failed", 1), load  # not retried: waiting mends no file
    with wh.connect() as conn:
        recorded = conn.execute("select status, summary ->> 'message' from audit.pipeline_runs "
                                "where run_id = 'manual__broken_file'").fetchall()
    assert len(recorded) == 1 and recorded[0][0] == "failed"
    assert f"sales/{day.isoformat()}/orders.csv: line 1: required column(s) missing" in recorded[0][1]
    # the callback wrote where the task did: no embedded server under any machine's CRM360_HOME
    assert not list(stack.root.glob("*/crm360/pgdata"))
    (folder / "orders.csv").unlink()
    folder.rmdir()


def _day_two(stack: Stack, wh, landing: Path, known: set[str], figures: dict) -> set[str]:
    before = _raw_rows(wh)
    manifest = generate_next_day(landing, _config())
    day = date.fromisoformat(manifest["end_date"])
    expected = {t: n + _file_rows(landing, day)[t] for t, n in before.items()}
    runs = [(dag_id, f"manual__day_two_{dag_id}") for dag_id in INGEST]
    started = time.monotonic()
    stack.trigger_together(runs)  # no logical date: what the Trigger button sends
    transform = stack.wait_for(lambda: _new_transform_run(stack, known), RUN_TIMEOUT, "day two's transform run")
    assert transform["state"] == "success", transform
    figures["day_two_seconds"] = round(time.monotonic() - started, 1)
    ingest_runs = stack.finished([r for _, r in runs])
    assert ingest_runs and all(r["state"] == "success" and r["logical_date"] is None for r in ingest_runs)
    figures["day_two_highest_try"] = _first_tries_only(stack, [transform["run_id"], *(r for _, r in runs)])
    assert _raw_rows(wh) == expected  # exactly the new day's rows, nothing twice
    assert _marts(wh) == (manifest["people"], manifest["revenue"])
    with wh.connect() as conn:
        as_of = conn.execute("select distinct as_of_date from marts.customer_pyramid").fetchall()
    # a run without a logical date is as of the day it was triggered (UTC; the latest, if midnight passed)
    assert as_of == [(max(r["run_after"].astimezone(UTC).date() for r in ingest_runs),)]
    return known | {transform["run_id"]}


def _day_three(stack: Stack, wh, landing: Path, known: set[str]) -> None:
    """A logical date, the as_of parameter, and a parameter that is no date."""
    refused = stack.trigger("crm360_ingest_web", "manual__not_a_date", conf={"as_of": "tomorrow"}, check=False)
    if refused.returncode == 0:  # Airflow let it through: crm360 refuses it, once
        [run] = stack.wait_for(lambda: stack.finished(["manual__not_a_date"]), RUN_TIMEOUT, "the bad-parameter run")
        assert run["state"] == "failed"
        load = next(t for t in stack.task_instances(["manual__not_a_date"]) if t["task_id"] == "load")
        assert (load["state"], load["try_number"]) == ("failed", 1)
        assert "as_of: not a date (YYYY-MM-DD): 'tomorrow'" in stack.task_log(
            "crm360_ingest_web", "manual__not_a_date", "load")
    else:
        assert "as_of" in refused.stdout + refused.stderr
    before = _raw_rows(wh)
    day_two = date.fromisoformat(json.loads((landing / "manifest.json").read_text())["end_date"])
    manifest = generate_next_day(landing, _config())
    day_three = date.fromisoformat(manifest["end_date"])
    generate_next_day(landing, _config())  # a fourth day, which none of these runs may load
    cut = (day_three + timedelta(days=1)).isoformat()
    stack.trigger("crm360_ingest_sales", "manual__logical_date", logical_date=f"{cut}T00:00:00+00:00")
    stack.trigger("crm360_ingest_service", "manual__as_of", conf={"as_of": cut})
    stack.trigger("crm360_ingest_web", "manual__as_of", conf={"as_of": cut})
    transform = stack.wait_for(lambda: _new_transform_run(stack, known), RUN_TIMEOUT, "day three's transform run")
    assert transform["state"] == "success"
    _first_tries_only(stack, [transform["run_id"], "manual__logical_date", "manual__as_of"])
    rows = _file_rows(landing, day_three)
    assert _raw_rows(wh) == {t: n + rows[t] for t, n in before.items()}  # day three only, not day four
    assert day_two < day_three
    assert _marts(wh) == (manifest["people"], manifest["revenue"])
    with wh.connect() as conn:
        as_of = conn.execute("select distinct as_of_date from marts.customer_pyramid").fetchall()
    assert as_of == [(date.fromisoformat(cut),)]


def _config() -> GeneratorConfig:
    return GeneratorConfig.preset(PRESET, seed=SEED, malformed_rate=0.0)


def _nothing_left(stack: Stack) -> None:
    pids = [p.pid for p in stack.procs.values()]
    alive = [p for p in psutil.process_iter(["pid", "cmdline", "environ"])
             if p.info["pid"] in pids or str(stack.root) in " ".join(p.info["cmdline"] or [])
             or str(stack.root) in ((p.info["environ"] or {}).get("AIRFLOW_HOME") or "")]
    assert not alive, f"processes left running: {[(p.pid, p.info['cmdline']) for p in alive]}"


def run_as_deployed(executor: str, databases, tmp_path: Path, capsys) -> None:
    """The checks of this module's docstring, on one executor."""
    if executor == "CeleryExecutor":
        _redis_reachable()
    meta, wh = databases
    landing = tmp_path / "landing"
    _, manifest = generate(landing, _config())
    celery = executor == "CeleryExecutor"
    stack = Stack(root=tmp_path / "stack", metadata_url=_url(meta, "+psycopg2"), warehouse_url=_url(wh),
                  landing=landing, executor=executor, broker_url=REDIS_URL if celery else None,
                  workers=2 if celery else 0, queue=f"crm360_test_{uuid.uuid4().hex[:8]}")
    figures: dict = {"executor": executor}
    try:
        stack.start()
        known = _day_one(stack, wh, manifest, figures)
        _broken_file(stack, wh, landing, date.fromisoformat(manifest["end_date"]) + timedelta(days=1))
        known = _day_two(stack, wh, landing, known, figures)
        if celery:  # the tasks ran on both workers, each with its own home
            hosts = {t["hostname"] for t in stack.task_instances() if t["state"] == "success"}
            assert hosts == {"worker-1", "worker-2"}, hosts
        else:
            _day_three(stack, wh, landing, known)
    finally:
        stack.stop()
    _nothing_left(stack)
    with capsys.disabled():
        print(f"\ndeployed pipeline: {json.dumps(figures)}")
