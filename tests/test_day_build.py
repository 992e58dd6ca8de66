"""The fixed cost of a day (issue 21): a run starts dbt once, a day's row-level tests on the
incremental models read the rows the build added and their unique tests check the rows it wrote
against every row, while a full build tests every row."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from conftest import make_settings

from crm360 import pipeline
from crm360.synthetic.generate import GeneratorConfig, generate, generate_next_day
from crm360.transform import dbt

pytestmark = pytest.mark.e2e


def _compiled(settings, name: str) -> str:
    """The SQL dbt ran for a test (its compiled file in the target folder)."""
    (path,) = settings.dbt_target_dir.glob(f"compiled/**/{name}.sql")
    return path.read_text(encoding="utf-8")


def _marks(wh) -> dict[str, str]:
    with wh.connect() as conn:
        return {m: t.isoformat() for m, t in conn.execute("select model, loaded_at from audit.tested_through")}


@pytest.mark.timeout(900)
def test_a_day_starts_dbt_once_and_tests_the_rows_it_added(db, tmp_path, monkeypatch):
    landing = tmp_path / "landing"
    config = GeneratorConfig.preset("tiny", seed=7, malformed_rate=0.0)
    _, manifest = generate(landing, config)
    settings = make_settings(tmp_path / "home", landing)
    as_of = date_after(manifest)
    pipeline.run_all(as_of, "first", db, landing=landing, settings=settings)
    first = _marks(db)
    assert {"stg_web__events", "stg_sales__orders", "stg_sales__order_lines"} <= set(first)

    # the next day, counting dbt's processes (crm360.transform.dbt.start_process starts every one)
    generate_next_day(landing, config)
    starts = []
    real = dbt.start_process
    monkeypatch.setattr(dbt, "start_process", lambda *a, **kw: starts.append(a[0]) or real(*a, **kw))
    pipeline.run_all(as_of + timedelta(days=1), "second", db, landing=landing, settings=settings)
    assert len(starts) == 1, starts
    assert starts[0][1:3] == ["-m", "crm360.transform.build_process"]
    second = _marks(db)
    assert second["stg_web__events"] > first["stg_web__events"]  # the day added events: the mark moved on

    # a completed order of the first day made invalid in place, below the mark: a day's build,
    # whose accepted_values reads only the rows after the mark, does not read it
    with db.connect() as conn:
        order = conn.execute("""update staging.stg_sales__orders set order_status = 'bogus'
                                where order_id = (select min(order_id) from staging.stg_sales__orders
                                                  where order_status = 'completed' and loaded_at <= %s)
                                returning order_id""", (second["stg_sales__orders"],)).fetchone()[0]
        conn.commit()
    day = pipeline.transform(db, as_of + timedelta(days=1), settings, run_id="day")
    assert day["tests_after"] == second
    not_null = _compiled(settings, "not_null_stg_sales__orders_order_id")
    assert f"loaded_at > '{second['stg_sales__orders']}'::timestamptz" in not_null
    # the sessions' not_null reads every row: rewriting a visitor keeps old sessions' loaded_at
    assert "loaded_at >" not in _compiled(settings, "not_null_int_web_events_sessionized_session_id")
    _unique_reads_the_rows_written(db, settings, second)

    # a full build tests every row: the marks are not used (and the rebuilt order is valid again)
    full = pipeline.transform(db, as_of + timedelta(days=1), settings, full_refresh=True, run_id="full")
    assert full["tests_after"] == {}
    assert "loaded_at >" not in _compiled(settings, "not_null_stg_sales__orders_order_id")
    with db.connect() as conn:
        assert conn.execute("select order_status from staging.stg_sales__orders where order_id = %s",
                            (order,)).fetchone()[0] == "completed"

    # a build that fails its tests leaves no mark: the next one tests every row again
    with db.connect() as conn:
        conn.execute("update staging.stg_sales__orders set order_status = 'bogus' where order_id = %s", (order,))
        conn.commit()
    with pytest.raises(dbt.DbtError, match="accepted_values_stg_sales__orders"):
        with db.connect() as conn:  # as if the build had written it: a row after the mark
            conn.execute("update staging.stg_sales__orders set loaded_at = now() where order_id = %s", (order,))
            conn.commit()
        pipeline.transform(db, as_of + timedelta(days=1), settings, run_id="failing")
    assert _marks(db) == {}
    json.dumps(day)


def _duplicates(db, sql: str, *changes: tuple[str, object]) -> list:
    """What a compiled unique test finds after the changes (statement, parameters), rolled back."""
    with db.connect() as conn:
        for statement, params in changes:
            conn.execute(statement, params)
        found = [row[0] for row in conn.execute(sql)]
        conn.rollback()
    return found


def _unique_reads_the_rows_written(db, settings, marks: dict[str, str]) -> None:
    """A day's unique test checks the values of the rows the build wrote against every row: a new row
    repeating an old key is found, a repeat among rows the build did not write is not read."""
    orders = _compiled(settings, "unique_stg_sales__orders_order_id")
    assert f"loaded_at > '{marks['stg_sales__orders']}'::timestamptz" in orders
    copy_order = """insert into staging.stg_sales__orders select * from staging.stg_sales__orders
                    where order_id = %s"""
    with db.connect() as conn:
        old = conn.execute("select min(order_id) from staging.stg_sales__orders where loaded_at <= %s",
                           (marks["stg_sales__orders"],)).fetchone()[0]
    assert _duplicates(db, orders, (copy_order, (old,))) == []  # two old rows: tested before, not read
    with db.connect() as conn:
        columns = [r[0] for r in conn.execute(
            "select column_name from information_schema.columns where table_schema = 'staging' "
            "and table_name = 'stg_sales__orders' order by ordinal_position")]
    select = ", ".join("now()" if c == "loaded_at" else c for c in columns)
    repeated = (f"insert into staging.stg_sales__orders select {select}"
                f" from staging.stg_sales__orders where order_id = %s")
    assert _duplicates(db, orders, (repeated, (old,))) == [old]  # written today, repeating an old key

    # the sessions rewrite a visitor's rows together, old sessions with their old loaded_at: the test
    # reads every session of a visitor with a session loaded after the mark
    sessions = _compiled(settings, "unique_int_web_events_sessionized_session_id")
    assert "(visitor_id) in (select visitor_id" in sessions, sessions
    with db.connect() as conn:
        # a visitor with two sessions: one as the build wrote it (loaded after the mark), one kept old
        visitor, written, kept = conn.execute(
            """select visitor_id, max(session_id), min(session_id) from intermediate.int_web_events_sessionized
               group by visitor_id having count(*) > 1 order by visitor_id limit 1""").fetchone()
        other = conn.execute("select min(session_id) from intermediate.int_web_events_sessionized "
                             "where visitor_id <> %s", (visitor,)).fetchone()[0]
    rewrite = ("update intermediate.int_web_events_sessionized set loaded_at = now() where session_id = %s",
               (written,))
    copy = """insert into intermediate.int_web_events_sessionized
              select * from intermediate.int_web_events_sessionized where session_id = %s"""
    assert _duplicates(db, sessions, rewrite, (copy, (kept,))) == [kept]
    assert _duplicates(db, sessions, rewrite, (copy, (other,))) == []


def date_after(manifest: dict):
    from datetime import date

    return date.fromisoformat(manifest["end_date"]) + timedelta(days=1)
