"""Two runs for the same interval never both write: the second stops with a message naming
the first (or, with CRM360_RUN_LOCK_WAIT, waits for it), and the warehouse ends as one run left it."""

import subprocess
import sys
import threading
import time
from datetime import date

import pytest

from crm360 import cli, ingest, pipeline
from crm360.core import locks, schema
from crm360.pipeline import steps
from crm360.pipeline.steps import RunContext

AS_OF = date(2026, 5, 2)
EVENT = '{"event_id": "e%d", "visitor_id": "v1", "occurred_at": "2026-05-01T10:00:00Z"}\n'

HOLDER = """
import sys
from datetime import date
from crm360.core import locks, warehouse
wh = warehouse.from_url(sys.argv[1])
with locks.holding(wh, locks.EVERY_PART, "cli_2026-05-02", date(2026, 5, 2), wait=0):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes it
"""


@pytest.fixture
def wh(external_server, fresh_db):
    return fresh_db(external_server)


@pytest.fixture
def landing(tmp_path):
    web = tmp_path / "landing" / "web"
    web.mkdir(parents=True)
    for n, day in enumerate(("2026-04-30", "2026-05-01")):
        (web / f"events_{day}.jsonl").write_text("".join(EVENT % (10 * n + i) for i in range(5)))
    return tmp_path / "landing"


@pytest.fixture
def other_process(wh):
    """Another process running for 2026-05-02, holding every part of the warehouse."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, wh.conninfo], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.stdin.close()
    proc.wait(timeout=30)


def _written(wh):
    """What a run has written: rows in raw or the ledger, tables dbt built."""
    with wh.connect() as conn:
        raw = [t for (t,) in conn.execute("select table_name from information_schema.tables "
                                          "where table_schema = 'raw'").fetchall()]
        rows = {t: conn.execute(f'select count(*) from raw."{t}"').fetchone()[0] for t in raw}  # noqa: S608
        rows["audit.load_files"] = conn.execute("select count(*) from audit.load_files").fetchone()[0]
        built = conn.execute("select table_schema || '.' || table_name from information_schema.tables "
                             "where table_schema in ('staging', 'marts')").fetchall()
    return {t: n for t, n in rows.items() if n} | {t: "built" for (t,) in built}


def test_a_second_run_for_the_same_interval_stops_at_once_and_names_the_first(wh, landing, other_process,
                                                                                tmp_path, monkeypatch, capsys):
    from conftest import make_settings

    settings = make_settings(tmp_path / "home", landing, wh.conninfo)
    started = time.perf_counter()
    with pytest.raises(locks.RunLocked) as caught:
        pipeline.run_all(AS_OF, "cli_2026-05-02", wh, landing=landing, settings=settings)
    assert time.perf_counter() - started < 10
    message = str(caught.value)
    assert message.startswith("run cli_2026-05-02 cannot start ")
    assert "another crm360 run (cli_2026-05-02, for 2026-05-02) has held it since 20" in message
    assert f"(pid {other_process.pid} on " in message and "set CRM360_RUN_LOCK_WAIT to wait for it" in message
    with pytest.raises(locks.RunLocked, match=r"another crm360 run \(cli_2026-05-02, for 2026-05-02\)"):
        pipeline.backfill(date(2026, 5, 1), AS_OF, wh, landing=landing, settings=settings)
    assert _written(wh) == {}, "the stopped run must not have written anything"

    # the command line says the same on one line, without a traceback
    monkeypatch.setenv("CRM360_WAREHOUSE_URL", wh.conninfo)
    monkeypatch.setenv("CRM360_LANDING_DIR", str(landing))
    monkeypatch.setenv("CRM360_HOME", str(tmp_path / "home"))
    assert cli.main(["run", "--as-of", "2026-05-02"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("crm360 run: error: run cli_2026-05-02 cannot start ingest:")
    assert f"(pid {other_process.pid} on " in err

    # the holder's process ends (or dies): its connection and with it the lock are gone
    other_process.stdin.close()
    other_process.wait(timeout=30)
    with locks.holding(wh, locks.EVERY_PART, "next", AS_OF, wait=0):
        pass


def test_a_waiting_run_starts_when_the_first_is_done_and_loads_nothing_twice(wh, landing, monkeypatch):
    """Two ingest runs for one interval started together, as an Airflow task and a CLI run
    would: the second waits for the first, then finds every file loaded."""
    monkeypatch.setenv(locks.WAIT_ENV, "60")
    results, errors, holding = {}, [], threading.Event()
    release = threading.Event()

    def run(name, gate=None):
        try:
            with locks.holding(wh, steps.get("load").parts(RunContext(name, AS_OF, source="web")), name, AS_OF):
                holding.set()
                if gate:
                    gate.wait(30)
                results[name] = pipeline.ingest_source(wh, "web", name, landing, until=AS_OF)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    first = threading.Thread(target=run, args=("first", release))
    first.start()
    assert holding.wait(30)
    second = threading.Thread(target=run, args=("second",))
    second.start()
    time.sleep(1.5)
    assert "second" not in results, "the second run must wait while the first holds the source"
    release.set()
    first.join(60)
    second.join(60)
    assert errors == []
    assert results["first"]["files_loaded"] == 2 and results["first"]["rows"] == {"events": 10}
    assert results["second"]["files_loaded"] == 0 and results["second"]["files_skipped"] == 2
    # the first run's batch waits for its gate: the second run's gate checks it too
    assert results["second"]["batch_ids"] == ["second.1:web", "first.1:web"]
    with wh.connect() as conn:
        assert conn.execute("select count(*), count(distinct record->>'event_id') from raw.web_events"
                            ).fetchone() == (10, 10)
        assert conn.execute("select distinct batch_id from audit.load_files").fetchall() == [("first.1:web",)]


def test_without_waiting_exactly_one_of_two_airflow_tasks_writes(wh, landing, monkeypatch):
    """The Airflow glue holds the part its step writes; the task that finds it taken fails with a
    retryable error naming the holder (Airflow retries it), the other loads."""
    import crm360_airflow

    monkeypatch.setattr(crm360_airflow, "warehouse", lambda: wh)
    monkeypatch.setenv("CRM360_LANDING_DIR", str(landing))
    schema.migrate(wh)
    with locks.holding(wh, ["ingest:web"], "scheduled__2026-05-02T00:00:00+00:00", AS_OF, wait=0):
        with pytest.raises(locks.RunLocked, match=r"run manual_1 cannot start ingest:web: another crm360 run "
                                                  r"\(scheduled__2026-05-02T00:00:00\+00:00, for 2026-05-02\)"):
            crm360_airflow.run_step("load", "manual_1", source="web", as_of=AS_OF)
        # another source is another part: it loads meanwhile
        assert crm360_airflow.run_step("load", "manual_1", source="service", as_of=AS_OF)["files_loaded"] == 0
        with pytest.raises(locks.RunLocked):
            crm360_airflow.run_step("gate_raw", "manual_1", batch_ids=("manual_1.1:web",), as_of=AS_OF)
    assert crm360_airflow.run_step("load", "manual_1", source="web", as_of=AS_OF)["files_loaded"] == 2
    with wh.connect() as conn:
        assert conn.execute("select count(*) from raw.web_events").fetchone() == (10,)


def test_steps_name_the_parts_they_write():
    """The declaration says what each step writes: the locks a task holds come from it, not from where
    its arguments happen to stand."""
    def parts(name, **fields):
        return steps.get(name).parts(RunContext("r", AS_OF, **fields))

    assert parts("load", source="web") == ("ingest:web",)
    assert parts("gate_raw", batch_ids=("r.1:sales", "r.2:web", "r.1:web")) == ("ingest:sales", "ingest:web")
    assert parts("dbt_build") == parts("gate_marts") == parts("publish") == ("marts",)
    assert parts("apply_erasures") == tuple(locks.EVERY_PART)
    assert parts("source_freshness") == parts("summarize") == parts("migrate_warehouse") == ()
    assert set(locks.EVERY_PART) == {"ingest:sales", "ingest:service", "ingest:web", "marts"}
    assert ingest.SOURCES.keys() == {p.split(":")[1] for p in locks.EVERY_PART if p.startswith("ingest:")}
    # every step the DAGs run is declared, in the order the one-process run takes them
    assert [s.name for s in steps.INGEST] == ["migrate_warehouse", "load", "gate_raw"]
    assert [s.name for s in steps.TRANSFORM] == ["source_freshness", "apply_erasures", "dbt_build", "gate_marts",
                                                "publish", "summarize"]
