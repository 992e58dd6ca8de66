import contextlib
from datetime import UTC, date, datetime
from types import SimpleNamespace

import crm360_airflow
import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException

from crm360.core import locks, schema
from crm360.core.errors import ConfigurationError
from crm360.ingest import IngestError
from crm360.ingest.sources import SourceConfigError
from crm360.pipeline import run
from crm360.quality.gates import CheckResult, GateFailed


@pytest.fixture
def no_warehouse(monkeypatch):
    """The steps run against no database: the schema check and the locks record what they were asked."""
    seen = {"checked": [], "held": []}
    monkeypatch.setattr(crm360_airflow, "warehouse", lambda: "wh")
    monkeypatch.setattr(schema, "require_current", seen["checked"].append)

    @contextlib.contextmanager
    def holding(wh, parts, run_id, as_of, wait=None):
        seen["held"].append((tuple(parts), run_id))
        yield

    monkeypatch.setattr(locks, "holding", holding)
    return seen


def _raising(exc):
    def step(wh, ctx):
        raise exc
    return step


def _step(monkeypatch, action, fn):
    monkeypatch.setattr(run, action, fn)


def test_bad_data_fails_without_retry(monkeypatch, no_warehouse):
    _step(monkeypatch, "gate_raw_step", _raising(GateFailed("raw", [CheckResult("s", "expect_x", "c", False, 1,
                                                                                  None, [])])))
    with pytest.raises(AirflowFailException, match="raw gate failed"):
        crm360_airflow.run_step("gate_raw", "run", batch_ids=("run.1:web",))
    _step(monkeypatch, "load_step", _raising(IngestError("f: line 2")))
    with pytest.raises(AirflowFailException, match="f: line 2"):
        crm360_airflow.run_step("load", "run", source="web")
    _step(monkeypatch, "load_step", _raising(SourceConfigError("sources.yml: sources.web.url")))
    with pytest.raises(AirflowFailException, match="sources.web.url"):
        crm360_airflow.run_step("load", "run", source="web")


@pytest.mark.parametrize("error", [AttributeError("'NoneType' object has no attribute 'date'"), KeyError("x"),
                                   ConfigurationError("run parameter as_of: not a date"),
                                   schema.WarehouseOutdated("run `crm360 migrate`"), RecursionError("deep"),
                                   psycopg.errors.StatementTooComplex("stack depth limit exceeded")],
                         ids=lambda e: type(e).__name__)
def test_what_waiting_cannot_mend_is_not_retried(monkeypatch, no_warehouse, error):
    """A bug, a bad parameter, an outdated warehouse, a resource limit: retrying runs into it again."""
    _step(monkeypatch, "transform_step", _raising(error))
    with pytest.raises(AirflowFailException):
        crm360_airflow.run_step("dbt_build", "run")


@pytest.mark.parametrize("error", [ConnectionError("reset"), psycopg.OperationalError("server closed"),
                                   psycopg.errors.DeadlockDetected("deadlock"),
                                   locks.RunLocked("another run holds ingest:web")],
                         ids=lambda e: type(e).__name__)
def test_what_may_pass_later_stays_retryable(monkeypatch, no_warehouse, error):
    _step(monkeypatch, "transform_step", _raising(error))
    with pytest.raises(type(error)):
        crm360_airflow.run_step("dbt_build", "run")


def test_steps_check_the_schema_and_hold_what_they_declare_but_migrate_checks_nothing(monkeypatch, no_warehouse):
    _step(monkeypatch, "freshness_step", lambda wh, ctx: (wh, ctx.run_id, ctx.as_of))
    assert crm360_airflow.run_step("source_freshness", "r1", as_of=date(2026, 11, 1)) == ("wh", "r1",
                                                                                         date(2026, 11, 1))
    _step(monkeypatch, "gate_raw_step", lambda wh, ctx: "gated")
    assert crm360_airflow.run_step("gate_raw", "manual__1", batch_ids=("manual__1.1:web",)) == "gated"
    assert no_warehouse["checked"] == ["wh", "wh"]
    assert no_warehouse["held"] == [(("ingest:web",), "manual__1")]
    _step(monkeypatch, "migrate_step", lambda wh, ctx: "migrated")
    assert crm360_airflow.run_step("migrate_warehouse", "r1") == "migrated"
    assert no_warehouse["checked"] == ["wh", "wh"]


def _context(**kw):
    run = SimpleNamespace(run_after=kw.pop("run_after", None), run_type=kw.pop("run_type", "manual"))
    return {"params": {"as_of": kw.pop("as_of", None)}, "data_interval_end": None, "logical_date": None,
            "dag_run": run, **kw}


def test_a_runs_date_however_it_was_started():
    nine_pm = datetime(2026, 11, 5, 21, 0, tzinfo=UTC)
    # scheduled or backfilled: the data interval's end (a cron data-interval timetable's logical date
    # is the interval's start, the day before)
    for run_type in ("scheduled", "backfill"):
        assert crm360_airflow.run_date(_context(data_interval_end=datetime(2026, 11, 3, tzinfo=UTC),
                                                logical_date=datetime(2026, 11, 2, tzinfo=UTC), run_type=run_type,
                                                run_after=datetime(2026, 11, 3, tzinfo=UTC))) == date(2026, 11, 3)
    # triggered with a logical date: that date, though Airflow 3 sets the interval from the trigger time
    assert crm360_airflow.run_date(_context(data_interval_end=nine_pm, logical_date=datetime(2026, 11, 3, tzinfo=UTC),
                                            run_after=nine_pm)) == date(2026, 11, 3)
    # triggered without a logical date (the UI's button, `airflow dags trigger`): the day it ran
    assert crm360_airflow.run_date(_context(run_after=nine_pm)) == date(2026, 11, 5)
    # the parameter wins over both
    assert crm360_airflow.run_date(_context(as_of="2026-11-01", run_after=nine_pm)) == date(2026, 11, 1)
    with pytest.raises(ConfigurationError, match=r"as_of: not a date \(YYYY-MM-DD\): 'tomorrow'"):
        crm360_airflow.run_date(_context(as_of="tomorrow", run_after=nine_pm))
    with pytest.raises(ConfigurationError, match="cannot tell"):
        crm360_airflow.run_date(_context())


def test_a_transform_runs_date_follows_its_asset_events_unless_given():
    events = {"crm360://raw/sales": [SimpleNamespace(extra={"as_of": "2026-11-02"})],
              "crm360://raw/web": [SimpleNamespace(extra={"as_of": "2026-11-04"})]}
    later = datetime(2026, 11, 9, tzinfo=UTC)
    assert crm360_airflow.as_of_date(_context(triggering_asset_events=events, run_after=later)) == date(2026, 11, 4)
    assert crm360_airflow.as_of_date(_context(triggering_asset_events=events, run_after=later,
                                              as_of="2026-11-01")) == date(2026, 11, 1)
    assert crm360_airflow.as_of_date(_context(triggering_asset_events={}, run_after=later)) == date(2026, 11, 9)


def test_the_failure_callback_records_in_the_connections_warehouse(monkeypatch, external_server, fresh_db,
                                                                   tmp_path):
    """Not in an embedded server under CRM360_HOME: none is started, and the row is where the task wrote."""
    wh = fresh_db(external_server)
    monkeypatch.setenv("AIRFLOW_CONN_CRM360_WAREHOUSE", f"postgresql://{wh.user}@{wh.host}:{wh.port}/{wh.dbname}")
    monkeypatch.delenv("CRM360_WAREHOUSE_URL", raising=False)
    monkeypatch.setenv("CRM360_HOME", str(tmp_path / "home"))
    crm360_airflow.on_failure({"ti": SimpleNamespace(dag_id="crm360_ingest_sales", task_id="load"),
                               "run_id": "manual__2026-11-05", "exception": IngestError("orders.csv: line 3: bad"),
                               **_context(run_after=datetime(2026, 11, 5, tzinfo=UTC))})
    with wh.connect() as conn:
        rows = conn.execute("select run_id, status, as_of_date, summary ->> 'message' from audit.pipeline_runs"
                            ).fetchall()
    assert rows == [("manual__2026-11-05", "failed", date(2026, 11, 5), "load: orders.csv: line 3: bad")]
    assert not (tmp_path / "home" / "pgdata").exists()


def test_the_failure_callback_starts_no_embedded_server(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW_CONN_CRM360_WAREHOUSE", raising=False)
    monkeypatch.delenv("CRM360_WAREHOUSE_URL", raising=False)
    monkeypatch.setenv("CRM360_HOME", str(tmp_path / "home"))
    crm360_airflow.on_failure({"ti": SimpleNamespace(dag_id="d", task_id="t"), "run_id": "r",
                               "exception": ValueError("boom"), **_context()})
    assert not (tmp_path / "home" / "pgdata").exists()
