import contextlib

import crm360_airflow
import pytest
from airflow.sdk.exceptions import AirflowFailException

from crm360 import locks, pipeline
from crm360.gates import CheckResult, GateFailed
from crm360.ingest import IngestError
from crm360.sources import SourceConfigError


@pytest.fixture
def no_warehouse(monkeypatch):
    monkeypatch.setattr(crm360_airflow, "warehouse", lambda: "wh")
    monkeypatch.setattr(locks, "for_step", lambda wh, step, args: contextlib.nullcontext())


def test_bad_data_fails_without_retry(monkeypatch, no_warehouse):
    failure = GateFailed("raw", [CheckResult("s", "expect_x", "c", False, 1, None, [])])

    def failing(wh, *args):
        raise failure

    monkeypatch.setattr(pipeline, "gate", failing)
    with pytest.raises(AirflowFailException, match="raw gate failed"):
        crm360_airflow.run_step("gate", "raw", "run")
    monkeypatch.setattr(pipeline, "ingest_source", lambda wh, *a: (_ for _ in ()).throw(IngestError("f: line 2")))
    with pytest.raises(AirflowFailException, match="f: line 2"):
        crm360_airflow.run_step("ingest_source", "web", "run")
    monkeypatch.setattr(pipeline, "ingest_source",
                        lambda wh, *a: (_ for _ in ()).throw(SourceConfigError("sources.yml: sources.web.url")))
    with pytest.raises(AirflowFailException, match="sources.web.url"):
        crm360_airflow.run_step("ingest_source", "web", "run")


def test_other_errors_stay_retryable(monkeypatch, no_warehouse):
    monkeypatch.setattr(pipeline, "transform", lambda wh, *a: (_ for _ in ()).throw(ConnectionError("reset")))
    with pytest.raises(ConnectionError):
        crm360_airflow.run_step("transform", None)


def test_steps_get_the_warehouse_first(monkeypatch, no_warehouse):
    monkeypatch.setattr(pipeline, "check_freshness", lambda wh, run_id, as_of: (wh, run_id, as_of))
    assert crm360_airflow.run_step("check_freshness", "r1", "2026-11-01") == ("wh", "r1", "2026-11-01")
