"""A run's build in one dbt process (crm360.transform.build_process): one parse, the stages on its
manifest, the value fit between them; and what crm360.transform.dbt.run_build makes of its report."""

from __future__ import annotations

import json
import subprocess
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import make_settings

from crm360.core.warehouse import Warehouse
from crm360.transform import build_process, dbt

JOB = {"common": ["--project-dir", "p"], "vars_file": None, "result": "unused",
       "steps": [{"dbt": ["build", "--select", "a"]}, {"value_fit": {"as_of": "2026-11-01"}},
                 {"dbt": ["build", "--exclude", "a"]}]}


class FakeRunner:
    """dbt's dbtRunner as the build process uses it: records each invocation and the manifest it had."""

    invocations: list = []
    fail: str | None = None

    def __init__(self, manifest=None, callbacks=None):
        self.manifest = manifest

    def invoke(self, args):
        FakeRunner.invocations.append((args, self.manifest))
        if args[0] == "parse":
            return SimpleNamespace(success=True, result="the manifest", exception=None)
        node = SimpleNamespace(node=SimpleNamespace(unique_id=f"model.crm360.{args[2]}"), status="success",
                               message=None, failures=None, execution_time=0.5)
        if args[2] == FakeRunner.fail:
            node.status = "error"
            return SimpleNamespace(success=False, result=SimpleNamespace(results=[node]), exception=None)
        return SimpleNamespace(success=True, result=SimpleNamespace(results=[node]), exception=None)


@pytest.fixture
def runner(monkeypatch):
    monkeypatch.setattr(FakeRunner, "invocations", [])
    monkeypatch.setattr(FakeRunner, "fail", None)
    return FakeRunner


def test_one_parse_then_the_stages_on_its_manifest_with_the_fit_between(runner, tmp_path):
    vars_file = tmp_path / "vars.json"
    vars_file.write_text('{"segments": []}', encoding="utf-8")
    fits = []

    def fit(spec):
        fits.append(len(runner.invocations))  # invocations before the fit
        return {"value_fit": {"predictions": 3}, "success": True}

    done = build_process.run({**JOB, "vars_file": str(vars_file)}, runner=runner, value_fit=fit)
    args = [a for a, _ in runner.invocations]
    assert args == [["parse", "--project-dir", "p", "--vars", '{"segments": []}'],
                    ["build", "--select", "a", "--project-dir", "p", "--vars", '{"segments": []}'],
                    ["build", "--exclude", "a", "--project-dir", "p", "--vars", '{"segments": []}']]
    # the parse's manifest is handed to both stages: dbt does not read the project again
    assert [m for _, m in runner.invocations] == [None, "the manifest", "the manifest"]
    assert fits == [2]  # after the parse and the first stage, before the second
    assert [d["success"] for d in done] == [True, True, True, True]
    assert done[1]["results"] == [{"unique_id": "model.crm360.a", "status": "success", "message": None,
                                   "failures": None, "execution_time": 0.5}]
    assert done[2] == {"value_fit": {"predictions": 3}, "success": True}


def test_a_failing_stage_ends_the_build_before_the_fit(runner):
    runner.fail = "a"
    done = build_process.run(JOB, runner=runner, value_fit=lambda spec: pytest.fail("the fit ran"))
    assert [d["success"] for d in done] == [True, False] and len(runner.invocations) == 2


def test_a_failing_fit_ends_the_build_before_the_second_stage(runner):
    done = build_process.run(JOB, runner=runner, value_fit=lambda spec: {"success": False, "error": "ValueError: x"})
    assert len(done) == 3 and len(runner.invocations) == 2


def _fake_process(monkeypatch, report: list[dict], returncode: int = 0) -> list:
    """dbt.start_process replaced: the job it is given is kept, ``report`` written as its result."""
    started = []

    def start(cmd, env, cwd):
        job = json.loads(Path(cmd[-1]).read_text(encoding="utf-8"))
        started.append((cmd, env, job))
        Path(job["result"]).write_text(json.dumps({"steps": report}), encoding="utf-8")
        return subprocess.CompletedProcess(cmd, returncode, "dbt said something\n", "")

    monkeypatch.setattr(dbt, "start_process", start)
    return started


WH = Warehouse(params={"host": "127.0.0.1", "dbname": "db", "user": "u", "password": "secret"})
PARSED = {"dbt": ["parse"], "success": True, "results": [], "seconds": 1.5}


def _stage(uid: str, status: str = "success") -> dict:
    return {"dbt": ["build"], "success": status == "success", "seconds": 2.0,
            "results": [{"unique_id": uid, "status": status, "execution_time": 1.0}]}


def test_run_build_starts_one_process_and_reads_its_report(monkeypatch, tmp_path):
    started = _fake_process(monkeypatch, [PARSED, _stage("model.crm360.a"),
                                          {"value_fit": {"predictions": 3}, "success": True, "seconds": 0.1},
                                          _stage("model.crm360.b")])
    settings = make_settings(tmp_path / "home", tmp_path)
    steps = [{"dbt": ["build", "--select", "a"]}, {"value_fit": date(2026, 11, 1)}, {"dbt": ["build"]}]
    built = dbt.run_build(WH, steps, {"segments": []}, settings=settings, extra_env={"X": "1"})
    (cmd, env, job), = started
    assert cmd[-3:-1] == ["-m", "crm360.transform.build_process"]
    assert [r["unique_id"] for r in built.results] == ["model.crm360.a", "model.crm360.b"]
    assert built.value_fit == {"predictions": 3}
    process = built.seconds.pop("process")  # the process's wall time less its parts (here a fake's)
    assert built.seconds == {"parse": 1.5, "stage_1": 2.0, "value_fit": 0.1, "stage_2": 2.0}
    assert process < 0
    # the vars by file; the fit's warehouse by environment, never in the job file
    assert json.loads(Path(job["vars_file"]).read_text()) == {"segments": []}
    assert job["steps"][1] == {"value_fit": {"as_of": "2026-11-01", "settings": {
        "project_dir": str(settings.project_dir), "home": str(settings.home), "dbt_vars": None}}}
    assert "secret" not in json.dumps(job) and "secret" in env["CRM360_WAREHOUSE_URL"]
    assert env["X"] == "1" and env["CRM360_PG_DATABASE"] == "db"


def test_run_build_names_the_failing_nodes(monkeypatch, tmp_path):
    _fake_process(monkeypatch, [PARSED, _stage("model.crm360.a"), {"value_fit": {}, "success": True},
                                _stage("test.crm360.not_null_x", "fail")], returncode=1)
    steps = [{"dbt": ["build"]}, {"value_fit": date(2026, 11, 1)}, {"dbt": ["build"]}]
    with pytest.raises(dbt.DbtError, match=r"stage 2 of the build.*test.crm360.not_null_x \(fail\)") as caught:
        dbt.run_build(WH, steps, settings=make_settings(tmp_path / "home", tmp_path))
    assert not caught.value.retryable


def test_a_fit_that_lost_its_connection_fails_the_build_retryably(monkeypatch, tmp_path):
    _fake_process(monkeypatch, [PARSED, _stage("model.crm360.a"),
                                {"value_fit": None, "success": False, "retryable": True,
                                 "error": "OperationalError: server closed the connection"}], returncode=1)
    steps = [{"dbt": ["build"]}, {"value_fit": date(2026, 11, 1)}, {"dbt": ["build"]}]
    with pytest.raises(dbt.ValueFitError, match="value fit between the build's stages failed: Operational") as caught:
        dbt.run_build(WH, steps, settings=make_settings(tmp_path / "home", tmp_path))
    assert caught.value.retryable


def test_a_process_that_died_without_a_report_fails_the_build(monkeypatch, tmp_path):
    _fake_process(monkeypatch, [PARSED, _stage("model.crm360.a")], returncode=-9)
    with pytest.raises(dbt.DbtError, match=r"the build's dbt process failed \(exit -9\)"):
        dbt.run_build(WH, [{"dbt": ["build"]}, {"dbt": ["build"]}], settings=make_settings(tmp_path / "home", tmp_path))
