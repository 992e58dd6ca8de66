import json

import pytest

from crm360 import ingest
from crm360.core.settings import Settings
from crm360.quality import gates
from crm360.quality.gates import GateFailed, load_suites

PARAMS = {"as_of": "2026-01-02", "marts": "marts"}


def _orders_drop(root, rows):
    day = root / "sales" / "2026-01-01"
    day.mkdir(parents=True, exist_ok=True)
    lines = ["order_id,customer_id,ordered_at,status,currency,updated_at"]
    lines += [",".join(r) for r in rows]
    (day / "orders.csv").write_text("\n".join(lines) + "\n")


def test_suites_in_repo_are_well_formed():
    raw, marts = load_suites("raw"), load_suites("marts")
    assert {s.name for s in raw} >= {"raw_sales_orders", "raw_web_events", "raw_service_tickets"}
    assert {s.name for s in marts} >= {"marts_customer_360", "marts_customer_pyramid_summary"}
    for suite in raw:
        assert "_batch_id" in suite.query, f"{suite.path.name} must expose _batch_id"
        assert "_loaded_at" in suite.query, f"{suite.path.name} must expose _loaded_at (the gate finds batches by it)"


def test_raw_gate_blocks_a_bad_batch_and_names_the_check(db, tmp_path):
    _orders_drop(
        tmp_path,
        [
            ("O1", "C1", "2026-01-01T10:00:00+00:00", "completed", "EUR", ""),
            ("O2", "C1", "2026-01-01 10:00:00", "shipped", "EUR", ""),
        ],
    )
    ingest.load_source(db, tmp_path, "sales", "run1:sales")
    with pytest.raises(GateFailed) as failure:
        gates.run_gate(db, "raw", "run1", ["run1:sales"], params=PARAMS)
    message = str(failure.value)
    assert "raw_sales_orders.status: expect_column_values_to_be_in_set" in message
    assert "shipped" in message
    assert "raw_sales_orders.ordered_at: expect_column_values_to_match_regex" in message
    with db.connect() as conn:
        failed = conn.execute(
            "select suite, column_name, unexpected_count, sample from audit.gate_results "
            "where run_id = 'run1' and not success order by column_name"
        ).fetchall()
    assert [(s, c, n) for s, c, n, _ in failed] == [
        ("raw_sales_orders", "ordered_at", 1),
        ("raw_sales_orders", "status", 1),
    ]
    # the sample names the offending rows by their key, not just the bad values
    assert failed[1][3] == [{"order_id": "O2", "_source_file": "sales/2026-01-01/orders.csv", "status": "shipped"}]


def test_raw_gate_checks_only_the_batches_given(db, tmp_path):
    _orders_drop(tmp_path, [("O2", "C1", "2026-01-01 10:00:00", "shipped", "EUR", "")])
    ingest.load_source(db, tmp_path, "sales", "old:sales")
    # a later, clean batch passes even though an older one in raw is bad
    results = gates.run_gate(db, "raw", "run2", ["some-other-batch"], params=PARAMS)
    assert results == []  # nothing of that batch in raw: nothing checked, nothing failed


def test_raw_gate_finds_the_batches_by_their_load_time(db, tmp_path):
    """The batches' rows are found through their attempts' load times (the raw tables' BRIN index),
    not by a scan of the raw table for their batch ids; a batch the ledger does not know is still
    checked, by its id."""
    _orders_drop(tmp_path, [("O1", "C1", "2026-01-01T10:00:00+00:00", "completed", "EUR", "")])
    ingest.load_source(db, tmp_path, "sales", "lt:sales")
    with db.connect() as conn:
        loaded_at = conn.execute("select loaded_at from audit.load_attempts where batch_id = 'lt:sales'").fetchone()[0]
        conn.execute("set enable_seqscan = off")  # a table of one row: would the index serve the predicate?
        plan = "\n".join(r[0] for r in conn.execute(
            f"explain select * from raw.sales_orders where {gates._batch_rows(db, ['lt:sales'])}"))  # noqa: S608
    assert gates._batch_rows(db, ["lt:sales"]) == \
        f"_loaded_at in ('{loaded_at.isoformat()}'::timestamptz) and _batch_id in ('lt:sales')"
    assert "sales_orders__loaded_at_idx" in plan  # the BRIN index, not a scan of the table alone
    assert gates._batch_rows(db, ["lt:sales", "unknown:sales"]) == "_batch_id in ('lt:sales', 'unknown:sales')"
    results = gates.run_gate(db, "raw", "lt", ["lt:sales"], params=PARAMS)
    assert {r.suite for r in results} >= {"raw_sales_orders"} and all(r.success for r in results)


def test_a_gate_run_again_appends_its_verdict_and_reports_read_the_newest(db, tmp_path):
    from crm360.quality import health

    _orders_drop(tmp_path, [("O1", "C1", "2026-01-01T10:00:00+00:00", "completed", "EUR", "")])
    ingest.load_source(db, tmp_path, "sales", "r:sales")
    gates.run_gate(db, "raw", "r", ["r:sales"], params=PARAMS)
    gates.run_gate(db, "raw", "r", ["r:sales"], params=PARAMS)
    checks = sum(len(s.expectations) for s in load_suites("raw") if s.name.startswith("raw_sales_orders"))
    with db.connect() as conn:
        runs = conn.execute("select checked_at, count(*) from audit.gate_results where run_id = 'r' "
                            "group by 1 order by 1").fetchall()
        summary = health.gate_summary(conn, "r")
    # only the suites with rows in the batch give a verdict (orders here): both kept, the history appended
    assert [n for _, n in runs] == [checks, checks]
    assert sum(row["checks"] for row in summary) == checks  # reports read the newest verdict, not both


def test_a_suite_without_query_is_rejected(tmp_path):
    (tmp_path / "bad.json").write_text(
        json.dumps({"name": "bad", "meta": {"crm360": {"stage": "raw"}}, "expectations": []})
    )
    with pytest.raises(ValueError, match="bad.json: a suite needs"):
        load_suites("raw", tmp_path)


def test_raw_gate_names_web_events_without_a_utc_offset(db, tmp_path):
    """The web suite matches the ISO 8601 pattern once in its query and checks the flag."""
    (tmp_path / "web").mkdir()
    events = [{"event_id": "E1", "visitor_id": "v1", "event_type": "page_view", "occurred_at": "2026-01-01T10:00:00Z"},
              {"event_id": "E2", "visitor_id": "v1", "event_type": "page_view", "occurred_at": "2026-01-01 11:00:00"},
              {"event_id": "E3", "visitor_id": "v2", "event_type": "login", "occurred_at": "2026-01-03T09:00:00+01:00"},
              # not one of the usual shapes: matched by the pattern
              {"event_id": "E4", "visitor_id": "v2", "event_type": "view", "occurred_at": "2026-01-01 10:00:00.2+0100"},
              # dated after the run's day where it happened, before it in UTC; and the other way round
              {"event_id": "E5", "visitor_id": "v3", "event_type": "login", "occurred_at": "2026-01-03T01:00:00+02:00"},
              {"event_id": "E6", "visitor_id": "v3", "event_type": "login", "occurred_at": "2026-01-02T23:30:00-02:00"}]
    (tmp_path / "web" / "events_2026-01-01.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    ingest.load_source(db, tmp_path, "web", "run3:web")
    with pytest.raises(GateFailed) as failure:
        gates.run_gate(db, "raw", "run3", ["run3:web"], params=PARAMS)
    assert "raw_web_events.occurred_at_is_iso8601: expect_column_values_to_be_in_set" in str(failure.value)
    with db.connect() as conn:
        failed = dict(conn.execute(
            "select column_name, sample from audit.gate_results where run_id = 'run3' and not success").fetchall())
        passed = conn.execute("select count(*) from audit.gate_results where run_id = 'run3' and success").fetchone()[0]
    # E2 has no offset; E3 and E6 are dated after the run's day (UTC); the rows are sampled by key
    assert failed == {"occurred_at_is_iso8601": [{"event_id": "E2", "occurred_at_is_iso8601": False}],
                      "is_in_future": [{"event_id": "E3", "is_in_future": True},
                                       {"event_id": "E6", "is_in_future": True}]}
    assert passed == 3


def test_a_marts_suite_over_no_rows_still_gives_its_verdict(db, tmp_path):
    """An empty raw batch has nothing to check, but an empty mart is a finding: its scratch table
    is kept and checked, so a row count expectation fails the gate."""
    project = tmp_path / "project"
    (project / "expectations" / "marts").mkdir(parents=True)
    (project / "expectations" / "marts" / "marts_one.json").write_text(json.dumps({
        "name": "marts_one",
        "meta": {"crm360": {"stage": "marts", "query": "select customer_key from ${marts}.one"}},
        "expectations": [{"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
                         {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_key"}}]}))
    with db.connect() as conn:
        conn.execute("create schema empty_marts")
        conn.execute("create table empty_marts.one (customer_key text)")
        conn.commit()
    settings = Settings(project_dir=project, home=tmp_path / "home", landing_dir=tmp_path, warehouse_url=None)
    with pytest.raises(GateFailed, match=r"marts_one: expect_table_row_count_to_be_between"):
        gates.run_gate(db, "marts", "run4", settings=settings, params={"marts": "empty_marts"})
    with db.connect() as conn:
        assert conn.execute("select expectation, success from audit.gate_results where run_id = 'run4' "
                            "order by expectation").fetchall() == [
            ("expect_column_values_to_not_be_null", True), ("expect_table_row_count_to_be_between", False)]
        # the scratch tables are gone
        assert conn.execute("select count(*) from pg_tables where schemaname = 'audit' and tablename like '\\_gate\\_%'"
                            ).fetchone()[0] == 0
