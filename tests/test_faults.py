"""Faults in the middle of a run: after the retry (or a manual re-run of the same run
id) the warehouse equals a clean run's, table by table, with nothing lost, nothing
duplicated and nothing half-published in between.

"Equals" is a fingerprint per table: its row count and an order-independent hash
of its rows. Left out are the columns that record *when* rows were loaded
(``_loaded_at`` in raw, the ``loaded_at`` incremental models carry on, the ledger's
``loaded_at``): a re-run loads at another moment by design. ``_batch_id`` and the
ledger's ``batch_id`` are kept, since a retry of a run reuses its run id, and with it
its batch ids. Floating-point columns (the value model's predictions) are compared
rounded to 6 decimals.

The clean reference is built once per module, on an embedded PostgreSQL of the
module's own, which the tests restart (no other module's server, let alone a shared
one). Faults in loading compare raw and the load ledger; faults in the transform,
the gates and publication run inside the whole-DAG retry test, on the reference
database itself, so the module pays for about two dbt builds besides the reference's.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
import slow_reads
from conftest import MARTS_CHECKSUM, REPO, make_settings
from fingerprint import PER_RUN_COLUMNS, assert_same, fingerprint, only
from psycopg import sql

import crm360
from crm360 import ingest, pipeline
from crm360.core import schema, warehouse
from crm360.synthetic.generate import GeneratorConfig, generate
from crm360.transform import publish

pytestmark = pytest.mark.e2e

RUN = "faults_run"
SEED = 17  # the generator's; the fault points have their own seed (see fault_rng)


def raw_matches_ledger(wh: warehouse.Warehouse) -> None:
    """Every file in raw is whole: its rows are the ledger's count, and raw holds no rows of
    a file the ledger does not list (a COPY cut short)."""
    with wh.connect() as conn:
        ledger = dict(conn.execute("select source_file, row_count from audit.load_files").fetchall())
        in_raw: dict[str, int] = {}
        for tables in ingest.CONTRACT.values():
            for table in tables:
                for rel, n in conn.execute(sql.SQL("select _source_file, count(*) from {} group by 1")
                                           .format(sql.Identifier("raw", table.table))):
                    in_raw[rel] = in_raw.get(rel, 0) + n
    assert {f: n for f, n in in_raw.items() if n != ledger.get(f)} == {}
    assert {f for f, n in ledger.items() if n and f not in in_raw} == set()


def load_all(wh, landing, as_of) -> None:
    """The three ingest tasks of a run, as its retry runs them."""
    for source in ingest.SOURCES:
        pipeline.ingest_source(wh, source, RUN, landing, until=as_of)


# -- the clean reference


@pytest.fixture(scope="module")
def own_server(tmp_path_factory):
    """An embedded PostgreSQL of this module's own: the tests restart it, which no other
    module's server (and certainly not a shared one) may go through."""
    settings = make_settings(tmp_path_factory.mktemp("faults_pg"), Path("."))
    wh = warehouse.start_embedded(settings)
    yield SimpleNamespace(wh=wh, settings=settings)
    warehouse.stop_embedded(settings)


def restart(server) -> None:
    """pg_ctl restart -m fast: sessions are terminated, the server is back when this returns."""
    import pgserver
    from pgserver._commands import pg_ctl  # pinned pgserver, as crm360.core.warehouse.stop_embedded

    pgdata = server.settings.pgdata_dir
    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=pgdata,
           user=pgserver.get_server(pgdata, cleanup_mode=None).system_user)


@pytest.fixture(scope="module")
def clean(own_server, tmp_path_factory):
    """One clean run of the tiny preset: (warehouse, settings, landing, as_of, fingerprint)."""
    root = tmp_path_factory.mktemp("faults")
    landing = root / "landing"
    world, _ = generate(landing, GeneratorConfig.preset("tiny", seed=SEED))
    name = f"crm360_test_{uuid.uuid4().hex[:10]}"
    wh = warehouse.ensure_database(own_server.wh, name)
    settings = make_settings(root / "home", landing)
    as_of = world.end_date + timedelta(days=1)
    pipeline.run_all(as_of, RUN, wh, landing=landing, settings=settings)
    prints = fingerprint(wh)
    yield SimpleNamespace(wh=wh, settings=settings, landing=landing, as_of=as_of, prints=prints, root=root)
    warehouse.drop_database(own_server.wh, name)


@pytest.fixture(scope="module")
def fault_rng():
    seed = int(os.environ.get("CRM360_FAULT_SEED") or random.randrange(1 << 31))
    print(f"fault points drawn with CRM360_FAULT_SEED={seed}")
    return random.Random(seed), seed


def test_fingerprint_sees_a_lost_and_a_duplicated_row(clean, fresh_db, own_server):
    """The comparison can fail: one row fewer, or one row twice, is a difference."""
    wh = fresh_db(own_server.wh)
    schema.migrate(wh)
    load_all(wh, clean.landing, clean.as_of)
    assert_same(only(fingerprint(wh), "raw", "audit"), only(clean.prints, "raw", "audit"))
    with wh.connect() as conn:
        conn.execute("insert into raw.sales_orders select * from raw.sales_orders limit 1")
        conn.execute("delete from raw.web_events where ctid = (select min(ctid) from raw.web_events)")
        conn.commit()
    with pytest.raises(AssertionError, match=r"raw\.sales_orders.*raw\.web_events|raw\.web_events.*raw\.sales"):
        assert_same(only(fingerprint(wh), "raw", "audit"), only(clean.prints, "raw", "audit"))


# -- fault 1: the loader is killed in the middle of a COPY

SLOW_LOADER = """
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, "tests")
import slow_reads
from crm360 import pipeline
from crm360.core.warehouse import from_url

# the test must catch the COPY running: small batches, sent at once, read slowly
slow_reads.apply(setattr)
url, landing, as_of, run_id = sys.argv[1:]
pipeline.ingest_source(from_url(url), "web", run_id, Path(landing), until=date.fromisoformat(as_of))
print("finished")
"""


def _copy_in_progress(conn, dbname: str) -> tuple[int, int] | None:
    """(pid, bytes received so far) of a COPY into raw web events, once a few web files are committed."""
    row = conn.execute("""
        select p.pid, p.bytes_processed from pg_stat_progress_copy p
        join pg_stat_activity a on a.pid = p.pid
        where p.datname = %s and p.bytes_processed > 0 and a.query ilike 'copy "raw"."web_events"%%'""",
        (dbname,)).fetchone()
    if row is None:
        return None
    done = conn.execute("select count(*) from audit.load_files where source = 'web'").fetchone()[0]
    return row if done >= 3 else None


def test_loader_killed_mid_copy_loads_everything_once_on_retry(clean, fresh_db, own_server):
    wh = fresh_db(own_server.wh)
    schema.migrate(wh)
    proc = subprocess.Popen([sys.executable, "-c", SLOW_LOADER, wh.conninfo, str(clean.landing),
                             clean.as_of.isoformat(), RUN], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    caught = None
    try:
        with wh.connect(autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while caught is None and proc.poll() is None and time.monotonic() < deadline:
                caught = _copy_in_progress(conn, wh.dbname)
                time.sleep(0.02)
            assert caught, f"never saw the loader's COPY running: {proc.poll()} {proc.stdout.read()[-2000:]}"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            pid, rows = caught
            for _ in range(200):  # the server notices the lost client and rolls its transaction back
                if not conn.execute("select 1 from pg_stat_activity where pid = %s", (pid,)).fetchone():
                    break
                time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    print(f"killed the loader in a COPY that had sent {rows} bytes of the file")
    raw_matches_ledger(wh)  # the file being copied is not there at all
    with wh.connect() as conn:
        committed = conn.execute("select count(*) from audit.load_files").fetchone()[0]
    assert 3 <= committed < clean.prints["audit.load_files"][0]  # some files in, the rest still to load

    load_all(wh, clean.landing, clean.as_of)  # the task's retry: same run id

    raw_matches_ledger(wh)
    assert_same(only(fingerprint(wh), "raw", "audit"), only(clean.prints, "raw", "audit"))


# -- fault 2: PostgreSQL restarts while a load runs


@contextmanager
def slow_copies(monkeypatch):
    """Read JSON lines files slowly, so a COPY is running long enough to be hit."""
    with monkeypatch.context() as patch:
        slow_reads.apply(patch.setattr)
        yield


def test_postgres_restart_mid_load_fails_the_task_and_the_retry_completes(clean, own_server, fresh_db, monkeypatch):
    wh = fresh_db(own_server.wh)
    schema.migrate(wh)
    outcome: dict = {}

    def load():
        try:
            outcome["result"] = pipeline.ingest_source(wh, "web", RUN, clean.landing, until=clean.as_of)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    with slow_copies(monkeypatch):
        worker = threading.Thread(target=load)
        worker.start()
        with wh.connect(autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while not _copy_in_progress(conn, wh.dbname) and worker.is_alive() and time.monotonic() < deadline:
                time.sleep(0.02)
        assert worker.is_alive(), f"the load ended before the restart: {outcome}"
        restart(own_server)
        worker.join(timeout=60)
    error = outcome.get("error")
    assert error is not None, "the load survived a server restart mid-COPY?"
    print(f"load during the restart failed with {type(error).__name__}: {error} {getattr(error, '__notes__', '')}")
    # a lost connection is worth a retry: not the bad-data error that fails a task without one
    assert not isinstance(error, ingest.IngestError), error
    assert isinstance(error, psycopg.OperationalError), repr(error)
    raw_matches_ledger(wh)

    load_all(wh, clean.landing, clean.as_of)

    raw_matches_ledger(wh)
    assert_same(only(fingerprint(wh), "raw", "audit"), only(clean.prints, "raw", "audit"))


# -- the whole DAG, every task retried, with faults in the transform, a gate and publication

CRM360_DIR = str(Path(crm360.__file__).resolve().parent)
# About how many crm360 function calls each task makes here (measured); an interruption
# point is drawn from 1 to this, so a draw past the task's end is a retry after success.
CALLS = {"migrate_warehouse": 40, "load": 900, "gate_raw": 170, "source_freshness": 60, "apply_erasures": 10,
         "summarize": 150}
RECENT_DAYS = 3  # the drops the DAG run has to load; the rest is there from earlier runs


class Interrupted(BaseException):
    """The task's process dies: no ``except Exception`` in crm360 may swallow this."""


@contextmanager
def interrupted_at(call: int):
    """Raise ``Interrupted`` on the ``call``-th call of a crm360 function."""
    seen = 0

    def tracer(frame, event, arg):
        nonlocal seen
        if event == "call" and frame.f_code.co_filename.startswith(CRM360_DIR):
            seen += 1
            if seen == call:
                raise Interrupted(f"interrupted at crm360 call {call}: {frame.f_code.co_name}")
        return None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        yield lambda: seen
    finally:
        sys.settrace(previous)


def _unload_recent(wh, as_of) -> int:
    """Take the newest days' files back out of raw and the ledger: the state before today's loads."""
    with wh.connect() as conn:
        files = [rel for (rel,) in conn.execute("select source_file from audit.load_files")
                 if (day := ingest.file_date(rel)) and day >= as_of - timedelta(days=RECENT_DAYS)]
        for tables in ingest.CONTRACT.values():
            for table in tables:
                conn.execute(sql.SQL("delete from {} where _source_file = any(%s)")
                             .format(sql.Identifier("raw", table.table)), (files,))
        conn.execute("delete from raw._quarantine where source_file = any(%s)", (files,))
        conn.execute("delete from audit.load_files where source_file = any(%s)", (files,))
        conn.commit()
    return len(files)


def _faulty_project(clean, root: Path, rng) -> tuple[Path, str]:
    """A copy of the project with one model of the first dbt stage failing at run time and a
    marts suite no build can pass. Returns the copy and the failing model."""
    import json

    shutil.copytree(REPO / "dbt_project", root / "dbt_project", ignore=shutil.ignore_patterns("target", "logs"))
    shutil.copytree(REPO / "expectations", root / "expectations")
    for path in REPO.glob("*.yml"):  # sources.yml, segments.yml, ...
        shutil.copy(path, root / path.name)
    manifest = json.loads((clean.settings.dbt_target_dir / "manifest.json").read_text())
    first_stage, todo = set(), ["model.crm360.int_customer_purchase_summary"]
    while todo:
        node = todo.pop()
        if node.startswith("model.") and node not in first_stage:
            first_stage.add(node)
            todo += manifest["parent_map"].get(node, [])
    model = rng.choice(sorted(first_stage))
    path = root / "dbt_project" / manifest["nodes"][model]["original_file_path"]
    path.write_text('{{ config(pre_hook="select 1 / 0 as injected_fault") }}\n' + path.read_text())
    suite = root / "expectations" / "marts" / "marts_customer_360.json"
    spec = json.loads(suite.read_text())
    for expectation in spec["expectations"]:
        if expectation["kwargs"].get("column") == "revenue":
            expectation["kwargs"]["max_value"] = 1
    suite.write_text(json.dumps(spec))
    return root, model.split(".")[-1]


def _marts_state(wh) -> tuple:
    """(schema oid of marts, publications, marts checksum): what readers are shown."""
    with wh.connect() as conn:
        return (conn.execute("select oid::int from pg_namespace where nspname = 'marts'").fetchone()[0],
                conn.execute("select count(*) from audit.publications").fetchone()[0],
                conn.execute(MARTS_CHECKSUM).fetchone())


class Readers:
    """BI readers querying the marts in a loop; they record what they saw and every error."""

    def __init__(self, wh, n: int = 2):
        self.wh, self.seen, self.errors, self.stop = wh, set(), [], threading.Event()
        self.threads = [threading.Thread(target=self.read) for _ in range(n)]

    def read(self):
        with psycopg.connect(self.wh.conninfo, autocommit=True) as conn:
            conn.execute("set statement_timeout = '10s'")
            while not self.stop.is_set():
                try:
                    self.seen.add(conn.execute(
                        "select c.relnamespace::int, count(*), sum(m.revenue)::text "
                        "from marts.customer_360 m, pg_class c where c.oid = 'marts.customer_360'::regclass "
                        "group by 1").fetchone())
                except psycopg.Error as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.01)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def _publish_killed_mid_transaction(wh, publish_task) -> BaseException | None:
    """Publication blocks after its renames (a maintenance session holds the publication log);
    its connection is then terminated, as when the worker's connection dies mid-transaction."""
    outcome: dict = {}

    def run():
        try:
            publish_task()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    with wh.connect() as holder:
        holder.execute("lock table audit.publications in access exclusive mode")
        worker = threading.Thread(target=run)
        worker.start()
        with wh.connect(autocommit=True) as admin:
            pid = None
            for _ in range(600):
                row = admin.execute("""select pid from pg_stat_activity where datname = current_database()
                                       and wait_event_type = 'Lock' and query ilike 'insert into audit.publications%'
                                    """).fetchone()
                if row:
                    pid = row[0]
                    break
                time.sleep(0.05)
            # the publication log is written after both renames, in the same transaction: waiting there, the
            # publication has renamed the schemas and not committed
            assert pid, f"publication never reached its last statement: {outcome}"
            time.sleep(0.3)  # readers query while the renames are uncommitted
            admin.execute("select pg_terminate_backend(%s)", (pid,))
        worker.join(timeout=60)
        holder.rollback()
    print(f"publication killed after its renames: {type(outcome.get('error')).__name__}")
    return outcome.get("error")


@pytest.mark.timeout(1800)  # a full run per step, each with a fault and its retry
def test_every_task_retried_at_a_random_point_leaves_the_same_result(clean, own_server, fault_rng, tmp_path,
                                                                      monkeypatch):
    """The DAGs' tasks in order, each called as its DAG calls it (crm360_airflow.run_step), each
    run twice: after a first attempt that succeeded, was interrupted at a random crm360 call,
    or hit an injected fault (a failing dbt model, a failing marts gate, a publication killed
    mid-transaction). Failures go through the DAGs' on_failure callback. At the end the
    warehouse equals the clean run's."""
    import crm360_airflow
    from airflow.sdk.exceptions import AirflowFailException

    from crm360.transform.dbt import DbtError

    rng, seed = fault_rng
    wh, as_of = clean.wh, clean.as_of
    unloaded = _unload_recent(wh, as_of)
    assert unloaded >= RECENT_DAYS * 3
    before = _marts_state(wh)
    monkeypatch.delenv("AIRFLOW_CONN_CRM360_WAREHOUSE", raising=False)
    monkeypatch.setenv("CRM360_WAREHOUSE_URL", wh.conninfo)
    monkeypatch.setenv("CRM360_HOME", str(clean.settings.home))
    monkeypatch.setenv("CRM360_LANDING_DIR", str(clean.landing))
    monkeypatch.delenv("CRM360_PROJECT_DIR", raising=False)
    faulty, broken_model = _faulty_project(clean, tmp_path / "faulty", rng)
    log: list[str] = []

    def failed(task_id: str, exc: BaseException) -> None:
        crm360_airflow.on_failure({"ti": SimpleNamespace(dag_id="crm360", task_id=task_id), "run_id": RUN,
                                   "exception": exc, "data_interval_end": datetime(*as_of.timetuple()[:3],
                                                                                   tzinfo=UTC)})

    def attempt(task_id: str, call, fault=None):
        """One try of a task; with no fault given, an interruption at a random point or none."""
        if fault is None:
            point = rng.randint(1, CALLS[task_id])
            try:
                with interrupted_at(point) as calls:
                    call()
                log.append(f"{task_id}: succeeded in {calls()} calls, before call {point}; retried")
            except Interrupted as exc:
                log.append(f"{task_id}: {exc}, retried")
                failed(task_id, exc)
        else:
            fault()
        return call()  # the retry

    batches = {}
    for source in ingest.SOURCES:
        attempt("migrate_warehouse", lambda: crm360_airflow.run_step("migrate_warehouse", RUN))
        batches[source] = attempt("load", lambda s=source: crm360_airflow.run_step(
            "load", RUN, source=s, as_of=as_of)["batch_ids"])
        attempt("gate_raw", lambda s=source: crm360_airflow.run_step(
            "gate_raw", RUN, batch_ids=tuple(batches[s]), as_of=as_of))
    raw_matches_ledger(wh)
    attempt("source_freshness", lambda: crm360_airflow.run_step("source_freshness", RUN, as_of=as_of))
    attempt("apply_erasures", lambda: crm360_airflow.run_step("apply_erasures", RUN))

    def failing_model():
        with monkeypatch.context() as patch:
            patch.setenv("CRM360_PROJECT_DIR", str(faulty))
            patch.setenv("CRM360_HOME", str(tmp_path / "faulty_home"))  # keep the real project's parse cache
            # a model that fails on the data fails again on a retry: failed at once, cleared once fixed
            with pytest.raises(AirflowFailException, match=broken_model) as failure:
                crm360_airflow.run_step("dbt_build", RUN, as_of=as_of)
        failed("dbt_build", failure.value)
        assert _marts_state(wh) == before, "a failed build changed the published marts"
        log.append(f"dbt_build: model {broken_model} failed without retry, nothing published, re-run")

    def restarted_build():
        """The fixed project's build, with PostgreSQL restarted while dbt writes a mart."""
        done, restarted = threading.Event(), []

        def watch():
            with wh.connect(autocommit=True) as conn:
                while not done.wait(0.05):
                    if conn.execute("select 1 from pg_stat_activity where state = 'active' and query ilike %s "
                                    "and pid <> pg_backend_pid()", (f"%create%{publish.BUILD}%",)).fetchone():
                        break
                else:
                    return
            restart(own_server)
            restarted.append(True)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            with pytest.raises(DbtError) as failure:  # not AirflowFailException: a lost server is worth a retry
                crm360_airflow.run_step("dbt_build", RUN, as_of=as_of)
        finally:
            done.set()
            watcher.join(timeout=120)
        assert restarted, "dbt never wrote a mart"
        assert failure.value.retryable
        failed("dbt_build", failure.value)
        assert _marts_state(wh) == before, "a build cut off by a restart changed the published marts"
        first = str(failure.value).splitlines()[0]
        log.append(f"dbt_build: PostgreSQL restarted while dbt wrote the marts ({first[:160]}), retried")

    attempt("dbt_build", lambda: crm360_airflow.run_step("dbt_build", RUN, as_of=as_of),
            lambda: (failing_model(), restarted_build()))

    def failing_gate():
        with monkeypatch.context() as patch:
            patch.setenv("CRM360_PROJECT_DIR", str(faulty))
            with pytest.raises(AirflowFailException, match="marts_customer_360.revenue") as failure:
                crm360_airflow.run_step("gate_marts", RUN, as_of=as_of)
        failed("gate_marts", failure.value)
        with wh.connect() as conn:
            status = conn.execute("select status from audit.pipeline_runs where run_id = %s", (RUN,)).fetchone()
        assert status == ("failed",)
        assert _marts_state(wh) == before, "a failed gate changed the published marts"
        log.append("gate_marts: failed without retry, run marked failed, marts kept, cleared and re-run")

    attempt("gate_marts", lambda: crm360_airflow.run_step("gate_marts", RUN, as_of=as_of), failing_gate)

    with Readers(wh) as readers:
        def killed_publish():
            error = _publish_killed_mid_transaction(wh, lambda: crm360_airflow.run_step("publish", RUN))
            assert isinstance(error, psycopg.OperationalError), repr(error)
            failed("publish", error)
            with wh.connect() as conn:
                assert conn.execute("select to_regnamespace(%s) is not null", (publish.BUILD,)).fetchone()[0]
            assert _marts_state(wh) == before, "a killed publication left the marts changed"
            log.append("publish: connection killed after the renames, rolled back, retried")

        attempt("publish", lambda: crm360_airflow.run_step("publish", RUN), killed_publish)
        time.sleep(0.2)
    attempt("summarize", lambda: crm360_airflow.run_step("summarize", RUN, as_of=as_of))

    print(f"seed {seed}:\n  " + "\n  ".join(log))
    after = _marts_state(wh)
    assert after[0] != before[0] and after[1] == before[1] + 1, "the retry did not publish once"
    assert readers.errors == []
    assert {oid for oid, *_ in readers.seen} <= {before[0], after[0]} and len(readers.seen) >= 1
    with wh.connect() as conn:
        assert conn.execute("select status from audit.pipeline_runs where run_id = %s", (RUN,)).fetchone() == (
            "success",)
    raw_matches_ledger(wh)
    assert_same(fingerprint(wh), clean.prints)


# -- one retry by Airflow itself


@pytest.mark.airflow
@pytest.mark.timeout(1200)  # airflow dags test, waiting out a retry delay
def test_airflow_retries_a_failed_task_and_the_load_is_whole(clean, own_server, fresh_db, tmp_path):
    """`airflow dags test` of the service ingest DAG while another run holds the service's
    part of the warehouse: the load task fails, Airflow retries it after its retry delay
    (30 s), and the retry loads the source as a clean load does."""
    from crm360.core import locks
    from crm360.pipeline import airflow_local

    wh, expected = fresh_db(own_server.wh), fresh_db(own_server.wh)
    schema.migrate(expected)
    pipeline.ingest_source(expected, "service", RUN, clean.landing, until=clean.as_of)
    settings = make_settings(tmp_path / "home", clean.landing, url=wh.conninfo)
    log_file = settings.airflow_home / f"dags_test_{clean.as_of.isoformat()}.log"
    held, done = threading.Event(), threading.Event()

    def other_run():
        with locks.holding(wh, ["ingest:service"], "another_run", clean.as_of, wait=0):
            held.set()
            while not done.wait(0.5):
                text = log_file.read_text(errors="replace").lower() if log_file.exists() else ""
                if "up_for_retry" in text:
                    return

    holder = threading.Thread(target=other_run)
    holder.start()
    try:
        assert held.wait(30)
        airflow_local.dags_test(clean.as_of, settings, dag_ids=("crm360_ingest_service",))
    finally:
        done.set()
        holder.join(timeout=30)
    text = log_file.read_text(errors="replace")
    assert "up_for_retry" in text.lower() and "another_run" in text, "the load task did not fail once"
    skip = PER_RUN_COLUMNS  # Airflow's run id names these batches
    assert_same(only(fingerprint(wh, ("raw",), skip), "raw", "audit"),
                only(fingerprint(expected, ("raw",), skip), "raw", "audit"))
