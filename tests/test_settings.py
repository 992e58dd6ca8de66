"""One typed configuration: every environment variable crm360 reads is a field of
crm360.core.settings.Settings, with the defaults and the error messages it always had, read by
the modules that use it. Reads the environment only: no database, no dbt, no Airflow."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from crm360.core import access, ddl, locks, schema
from crm360.core.errors import ConfigurationError
from crm360.core.settings import Settings, env_names, get_settings
from crm360.ingest import batch, sources
from crm360.quality import alerts
from crm360.serve import segments

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No crm360 variable of the shell running the tests leaks in."""
    for name in env_names():
        monkeypatch.delenv(name, raising=False)


def test_defaults():
    s = get_settings()
    assert s.project_dir == REPO and s.home == REPO / ".crm360" and s.landing_dir == REPO / "landing"
    assert s.warehouse_url is None and s.exports_dir == REPO / ".crm360" / "exports"
    assert s.sources_file == REPO / "sources.yml" and s.segments_file == REPO / "segments.yml"
    assert (s.max_bad_row_fraction, s.max_record_bytes, s.max_document_bytes) == (0.01, 16 << 20, 256 << 20)
    assert s.load_workers == min(2, os.cpu_count() or 1)
    assert (s.run_lock_wait, s.migrate_wait, s.ddl_lock_timeout, s.ddl_lock_tries) == (0, 600, 2, 5)
    assert s.dbt_pgoptions == "-c work_mem=256MB" and s.alert_webhook is None and s.dbt_vars is None


def test_every_variable_is_read_where_it_is_used(monkeypatch, tmp_path):
    values = {
        "CRM360_MAX_BAD_ROW_FRACTION": "0.25", "CRM360_LOAD_WORKERS": "7", "CRM360_MAX_RECORD_BYTES": "300",
        "CRM360_MAX_DOCUMENT_BYTES": "4000", "CRM360_RUN_LOCK_WAIT": "1.5", "CRM360_MIGRATE_WAIT": "30",
        "CRM360_DDL_LOCK_TIMEOUT": "0.3", "CRM360_DDL_LOCK_TRIES": "3", "CRM360_SOURCES": str(tmp_path / "s.yml"),
        "CRM360_SEGMENTS": str(tmp_path / "g.yml"), "CRM360_DBT_WORK_MEM": "64MB",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    assert (batch.max_bad_fraction(), batch.load_workers(), batch.max_record_bytes(), batch.max_document_bytes()) \
        == (0.25, 7, 300, 4000)
    assert (locks.wait_seconds(), schema.wait_seconds(), ddl.lock_timeout(), ddl.tries()) == (1.5, 30, 0.3, 3)
    assert sources.config_path(REPO) == tmp_path / "s.yml" and segments.segments_file() == tmp_path / "g.yml"
    assert get_settings().dbt_pgoptions == "-c work_mem=64MB"
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=5s")
    assert get_settings().dbt_pgoptions == "-c statement_timeout=5s"


def test_a_changed_variable_counts_from_the_next_call(monkeypatch):
    monkeypatch.setenv("CRM360_LOAD_WORKERS", "3")
    assert batch.load_workers() == 3
    monkeypatch.setenv("CRM360_LOAD_WORKERS", "4")
    assert batch.load_workers() == 4
    monkeypatch.setenv("CRM360_LOAD_WORKERS", "")  # empty is unset
    assert batch.load_workers() == min(2, os.cpu_count() or 1)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("CRM360_MAX_BAD_ROW_FRACTION", "lots", "must be a number between 0 and 1, got 'lots'"),
    ("CRM360_MAX_BAD_ROW_FRACTION", "1.5", "must be between 0 and 1, got '1.5'"),
    ("CRM360_LOAD_WORKERS", "two", "must be a whole number, got 'two'"),
    ("CRM360_LOAD_WORKERS", "0", "must be at least 1, got '0'"),
    ("CRM360_MAX_RECORD_BYTES", "1e6", "must be a whole number of bytes, got '1e6'"),
    ("CRM360_MAX_DOCUMENT_BYTES", "-5", "must be positive, got '-5'"),
    ("CRM360_RUN_LOCK_WAIT", "soon", "must be a number of seconds, got 'soon'"),
    ("CRM360_RUN_LOCK_WAIT", "-1", "must not be negative, got '-1'"),
    ("CRM360_MIGRATE_WAIT", "ten", "must be a number of seconds, got 'ten'"),
    ("CRM360_DDL_LOCK_TIMEOUT", "0", "must be a number of seconds above 0, got '0'"),
    ("CRM360_DDL_LOCK_TRIES", "2.5", "must be a whole number of tries, at least 1, got '2.5'"),
])
def test_a_bad_value_is_refused_naming_the_variable_and_the_value(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        get_settings()
    assert str(caught.value) == f"{name} {message}"
    assert isinstance(caught.value, ValueError) and not caught.value.retryable


def test_settings_made_in_code_win_over_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CRM360_WAREHOUSE_URL", "postgresql://elsewhere/db")
    monkeypatch.setenv("CRM360_HOME", str(tmp_path / "env-home"))
    s = Settings(project_dir=tmp_path, home=tmp_path / "home", landing_dir=tmp_path / "in", warehouse_url=None)
    assert (s.warehouse_url, s.home, s.dbt_project_dir) == (None, tmp_path / "home", tmp_path / "dbt_project")
    with pytest.raises(ConfigurationError, match="CRM360_LOAD_WORKERS must be at least 1, got 0"):
        Settings(load_workers=0)


def test_secrets_stay_out_of_the_repr(monkeypatch):
    monkeypatch.setenv("CRM360_MARKETING_PASSWORD", "s3cret-value")
    monkeypatch.setenv("CRM360_ALERT_WEBHOOK", "https://hooks.example/T0/abc")
    s = get_settings()
    assert "s3cret-value" not in repr(s) and "hooks.example" not in repr(s)
    assert s.password(access.PASSWORD_ENV[access.MARKETING]) == "s3cret-value"
    assert s.password(access.PASSWORD_ENV[access.BI_READER]) is None


def test_config_show_masks_secrets(monkeypatch, capsys):
    from crm360 import cli

    monkeypatch.setenv("CRM360_WAREHOUSE_URL", "postgresql://crm360:pa%40ss@db.example:5432/crm360")
    monkeypatch.setenv("CRM360_BI_READER_PASSWORD", "reader-secret")
    monkeypatch.setenv("CRM360_DDL_LOCK_TRIES", "7")
    assert cli.main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "CRM360_WAREHOUSE_URL=postgresql://crm360:**********@db.example:5432/crm360\n" in out
    assert "CRM360_BI_READER_PASSWORD=**********\n" in out and "CRM360_DDL_LOCK_TRIES=7\n" in out
    assert "pa%40ss" not in out and "reader-secret" not in out


def test_an_alert_goes_to_the_configured_webhook(monkeypatch):
    sent = []
    monkeypatch.setattr(alerts, "post_webhook", lambda url, payload: sent.append((url, payload["text"])))
    alerts.post({"text": "nobody listens"})
    monkeypatch.setenv(alerts.WEBHOOK_ENV, "https://hooks.example/T0/abc")
    alerts.post({"text": "hello"})
    assert sent == [("https://hooks.example/T0/abc", "hello")]
    monkeypatch.setenv("CRM360_LOAD_WORKERS", "none")  # a bad setting, maybe the failure the alert reports,
    with pytest.raises(ConfigurationError):  # ... stops crm360, but not its alert
        get_settings()
    alerts.post({"text": "again"})
    assert sent[1:] == [("https://hooks.example/T0/abc", "again")]


def _reads_of_the_environment(path: Path) -> list[str]:
    """Where a module reads an environment variable itself: os.environ[...] / .get / getenv / "in"."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        target = None
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            target = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("get",
                                                                                                          "getenv"):
            target = node.func.value if node.func.attr == "get" else node.func
        elif isinstance(node, ast.Compare) and any(isinstance(op, ast.In | ast.NotIn) for op in node.ops):
            target = node.comparators[0]
        if target is not None and ast.unparse(target) in ("os.environ", "os.getenv", "os"):
            found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_no_module_reads_the_environment_past_the_settings():
    """The settings are the one place; the one exception is sources.yml's ``${NAME}`` references,
    whose names the deployment chooses (crm360.ingest.sources)."""
    allowed = {"crm360/core/settings.py", "crm360/ingest/sources.py"}
    modules = sorted(p for folder in ("crm360", "dags", "plugins") for p in (REPO / folder).rglob("*.py"))
    found = [hit for path in modules if str(path.relative_to(REPO)) not in allowed
             for hit in _reads_of_the_environment(path)]
    assert not found, f"environment read outside crm360.core.settings: {', '.join(found)}"
    assert _reads_of_the_environment(REPO / "crm360" / "ingest" / "sources.py"), "the checker finds nothing"
