"""dbt's vars as crm360's Python steps read them are the vars dbt gets in a run: dbt_project.yml's,
with the deployment's overrides (CRM360_DBT_VARS) over them, var by var. Reads files and fakes
dbt's process: no database, no dbt."""

from __future__ import annotations

import json
import subprocess
from datetime import date
from pathlib import Path

import pytest
import yaml
from conftest import make_settings

from crm360 import pipeline
from crm360.core.errors import ConfigurationError
from crm360.core.warehouse import Warehouse
from crm360.privacy import requests
from crm360.transform import dbt, manifest, predictions

TIERS = [{"tier": "top", "share": 0.05}, {"tier": "big", "share": 0.15},
         {"tier": "medium", "share": 0.30}, {"tier": "small", "share": 0.50}]


def _settings(tmp_path):
    """Settings read from the environment as a test has set it (the model reads it when made)."""
    return make_settings(tmp_path / "home", tmp_path / "landing")


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.delenv("CRM360_DBT_VARS", raising=False)
    return _settings(tmp_path)


def _override(monkeypatch, tmp_path, doc) -> Path:
    path = tmp_path / "vars.yml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc), encoding="utf-8")
    monkeypatch.setenv("CRM360_DBT_VARS", str(path))
    return path


def test_without_overrides_python_reads_dbt_project_yml(settings):
    declared = yaml.safe_load((settings.dbt_project_dir / "dbt_project.yml").read_text())["vars"]
    assert dbt.project_vars(settings) == declared
    assert dbt.var_overrides(settings) == {}


@pytest.mark.integration  # segments read their columns from dbt's manifest: dbt parse runs
def test_an_override_reaches_python_and_dbt_alike(monkeypatch, tmp_path):
    _override(monkeypatch, tmp_path, {"revenue_tiers": TIERS, "clv_horizon_days": 180,
                                      "identity_shared_mailbox_prefixes": ["info", "sales"]})
    settings = _settings(tmp_path)
    seen = dbt.project_vars(settings)
    assert seen["revenue_tiers"] == TIERS and seen["clv_horizon_days"] == 180
    assert seen["active_window_days"] == 90  # not overridden: dbt_project.yml's

    # the Python steps: the marts gate's tier bounds, the value model, erasure's identity guards
    bounds = pipeline.gate_params(None, "raw", date(2026, 3, 1), settings)["revenue_tier_bounds"]
    assert bounds == "('top', 0.0, 0.05), ('big', 0.05, 0.2), ('medium', 0.2, 0.5), ('small', 0.5, 1.0)"
    assert predictions._settings_vars(settings)[0] == 180
    assert requests.shared_mailbox_prefixes(settings) == ["info", "sales"]

    # dbt: the vars file a run hands it carries the same overrides, so its var() equals Python's view
    manifest.load(settings)  # parsed for real before subprocess.run is replaced below
    calls = []
    monkeypatch.setattr(dbt.subprocess, "run",
                        lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0, "", ""))
    run_vars = pipeline.build_vars(settings)
    dbt.run_dbt(Warehouse(params={"host": "127.0.0.1", "dbname": "none"}), ["build"], run_vars, settings=settings)
    (cmd,) = calls
    handed = json.loads(Path(cmd[cmd.index("--vars-file") + 1]).read_text())
    as_dbt_sees_them = dbt.effective_vars(handed, settings)
    assert {k: v for k, v in as_dbt_sees_them.items() if k != "segments"} == \
        {k: v for k, v in seen.items() if k != "segments"}
    assert handed["segments"] == run_vars["segments"]


def test_a_run_var_replaces_a_whole_value_as_dbt_does(settings):
    merged = dbt.effective_vars({"revenue_tiers": TIERS[:2]}, settings)
    assert merged["revenue_tiers"] == TIERS[:2]


@pytest.mark.parametrize(("doc", "message"), [
    ({"active_windows_days": 30}, r"var 'active_windows_days' is not declared in dbt_project.yml \(misspelt\?\)"),
    ({"as_of_date": "2026-01-01"}, r"var 'as_of_date' cannot be overridden: a run's as-of date is its own"),
    ({"segments": []}, r"var 'segments' cannot be overridden: the segments come from segments.yml"),
    ({"reporting_currency": "USD"}, r"var 'reporting_currency' cannot be overridden: the reporting currency comes "
                                    r"from sources.yml \(currency: reporting:\)"),
    ("- a\n- b\n", r"must be a mapping of dbt var names to values, got list"),
    ("a: [unclosed\n", r"not YAML"),
])
def test_a_bad_override_file_is_refused_naming_it(monkeypatch, tmp_path, doc, message):
    path = _override(monkeypatch, tmp_path, doc)
    with pytest.raises(ConfigurationError, match=message) as caught:
        dbt.project_vars(_settings(tmp_path))
    assert str(caught.value).startswith(f"{path} (CRM360_DBT_VARS): ")


def test_a_missing_override_file_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("CRM360_DBT_VARS", str(tmp_path / "nowhere.yml"))
    with pytest.raises(ConfigurationError, match=r"nowhere.yml \(CRM360_DBT_VARS\): no such file"):
        pipeline.build_vars(_settings(tmp_path))
