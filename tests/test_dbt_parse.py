"""A run's as-of date reaches every model without making dbt re-parse the project daily.

dbt re-parses the whole project (seconds on every invocation of a run) when a --vars value
changes; the as-of date changes every day, so crm360 passes it as CRM360_AS_OF_DATE, which
re-parses only the files that read it."""

from datetime import date

from conftest import make_settings

from crm360 import pipeline
from crm360.core import schema
from crm360.transform import dbt


def _compile(db, settings, as_of: date):
    return dbt.run_dbt(db, ["compile", "--select", "int_customer_lifecycle"], pipeline.build_vars(settings),
                       settings=settings, extra_env=pipeline.build_env(as_of))


def test_as_of_date_reaches_models_and_a_new_day_parses_partially(db, tmp_path):
    settings = make_settings(tmp_path / "home", tmp_path / "landing")
    schema.migrate(db)
    compiled = settings.dbt_target_dir / "compiled" / "crm360" / "models" / "intermediate" / "customer"
    _compile(db, settings, date(2026, 3, 1))
    assert "cast('2026-03-01' as date)" in (compiled / "int_customer_lifecycle.sql").read_text()

    next_day = _compile(db, settings, date(2026, 3, 2))
    assert "cast('2026-03-02' as date)" in (compiled / "int_customer_lifecycle.sql").read_text()
    # a full re-parse says why it could not parse partially
    assert "Unable to do partial parsing" not in next_day.output, next_day.output

    # --vars still win, for hand-run builds
    by_var = dbt.run_dbt(db, ["compile", "--select", "int_customer_lifecycle"],
                         {**pipeline.build_vars(settings), "as_of_date": "2026-01-15"}, settings=settings,
                         extra_env=pipeline.build_env(date(2026, 3, 2)))
    assert "cast('2026-01-15' as date)" in (compiled / "int_customer_lifecycle.sql").read_text()
    assert "Unable to do partial parsing" in by_var.output  # what a daily var would cost every run


def test_an_override_of_a_var_reaches_dbt_and_python_alike(db, tmp_path, monkeypatch):
    """CRM360_DBT_VARS changes what dbt compiles and what crm360's Python steps read, the same way."""
    overrides = tmp_path / "vars.yml"
    overrides.write_text("active_window_days: 45\n", encoding="utf-8")
    monkeypatch.setenv("CRM360_DBT_VARS", str(overrides))
    settings = make_settings(tmp_path / "home", tmp_path / "landing")
    schema.migrate(db)
    _compile(db, settings, date(2026, 3, 1))
    sql = (settings.dbt_target_dir / "compiled" / "crm360" / "models" / "intermediate" / "customer"
           / "int_customer_lifecycle.sql").read_text()
    assert "- last_order_date < 45" in sql and "- last_order_date < 90" not in sql
    assert dbt.project_vars(settings)["active_window_days"] == 45
