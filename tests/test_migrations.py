"""The warehouse's schema comes from versioned migrations (crm360.core.schema, crm360/core/migrations):
one command creates or upgrades it, any number of processes may run it at once, a warehouse
built before migrations existed upgrades in place with its rows, and every step refuses a
warehouse older (or newer) than the code, naming the command to run."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import date
from decimal import Decimal
from pathlib import Path

import crm360_airflow
import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException
from conftest import REPO

from crm360 import ingest, pipeline
from crm360.cli import main as cli
from crm360.core import locks, schema

FIXTURE_0_1 = REPO / "tests" / "data" / "warehouse_0_1.sql"
OWNED = ("raw", "audit", "predictions")

CATALOG = {
    "schemas": """select nspname from pg_namespace where nspname in ('raw', 'staging', 'intermediate', 'marts',
                  'audit', 'predictions', 'scratch') order by 1""",
    "columns": """select c.table_schema, c.table_name, c.column_name, c.data_type, c.is_nullable,
                         coalesce(c.column_default, ''), coalesce(c.collation_name, '')
                  from information_schema.columns c join information_schema.tables t
                    on t.table_schema = c.table_schema and t.table_name = c.table_name
                  where c.table_schema = any(%(owned)s) and t.table_type = 'BASE TABLE'
                    and c.table_name <> 'schema_version' order by 1, 2, 3""",
    "indexes": """select schemaname, tablename, indexname, indexdef from pg_indexes
                  where schemaname = any(%(owned)s) order by 1, 2, 3""",
    "constraints": """select n.nspname, t.relname, pg_get_constraintdef(c.oid) from pg_constraint c
                      join pg_class t on t.oid = c.conrelid join pg_namespace n on n.oid = t.relnamespace
                      where n.nspname = any(%(owned)s) order by 1, 2, 3""",
    "functions": """select n.nspname, p.proname, pg_get_functiondef(p.oid) from pg_proc p
                    join pg_namespace n on n.oid = p.pronamespace where n.nspname = any(%(owned)s) order by 1, 2""",
    "table_grants": """select table_schema, table_name, grantee, privilege_type
                       from information_schema.role_table_grants where table_schema = any(%(owned)s)
                         and grantee in ('crm360_loader', 'crm360_transformer', 'bi_reader', 'marketing')
                       order by 1, 2, 3, 4""",
    "schema_grants": """select n.nspname, r.rolname, has_schema_privilege(r.oid, n.oid, 'usage'),
                               has_schema_privilege(r.oid, n.oid, 'create')
                        from pg_namespace n cross join pg_roles r
                        where n.nspname in ('raw', 'staging', 'intermediate', 'marts', 'audit', 'predictions')
                          and r.rolname in ('crm360_loader', 'crm360_transformer', 'bi_reader', 'marketing')
                        order by 1, 2""",
}


def catalog(wh) -> dict[str, list]:
    """What crm360 owns in the warehouse, as the catalog describes it."""
    with wh.connect() as conn:
        return {name: conn.execute(query, {"owned": list(OWNED)}).fetchall() for name, query in CATALOG.items()}


def revision(wh) -> str | None:
    with wh.connect() as conn:
        return schema.current(conn)


def restore_0_1(wh) -> None:
    with wh.connect(autocommit=True) as conn:
        conn.execute(FIXTURE_0_1.read_text(encoding="utf-8"))


def test_a_new_warehouse_gets_every_revision_once(server, fresh_db):
    wh = fresh_db(server, migrated=False)
    first = schema.migrate(wh)
    assert (first.before, first.after, first.applied) == (None, schema.head(), tuple(schema.revisions()))
    built = catalog(wh)
    assert [s for (s,) in built["schemas"]] == ["audit", "intermediate", "marts", "predictions", "raw", "scratch",
                                                "staging"]
    again = schema.migrate(wh)
    assert (again.before, again.applied) == (schema.head(), ())
    assert catalog(wh) == built
    schema.require_current(wh)


def test_a_server_older_than_crm360_needs_is_refused_before_anything_is_created(server, fresh_db, monkeypatch):
    wh = fresh_db(server, migrated=False)
    with wh.connect() as conn:
        running = int(conn.execute("show server_version_num").fetchone()[0])
    monkeypatch.setattr(schema, "MIN_SERVER_VERSION", running + 10000)  # as if this server were too old
    with pytest.raises(schema.ServerTooOld, match=rf"runs PostgreSQL {running // 10000}\.\d+; crm360 needs "
                                                  rf"{running // 10000 + 1} or newer"):
        schema.migrate(wh)
    assert revision(wh) is None
    assert not [s for (s,) in catalog(wh)["schemas"]]


def test_server_versions_are_named_as_postgresql_names_them():
    with pytest.raises(schema.ServerTooOld, match=r"PostgreSQL 13\.16; crm360 needs 14 or newer"):
        schema.require_server_version(130016, "a server")
    with pytest.raises(schema.ServerTooOld, match=r"PostgreSQL 9\.6\.24;"):
        schema.require_server_version(90624, "a server")
    schema.require_server_version(140000, "a server")
    schema.require_server_version(170002, "a server")


def test_migrations_started_together_apply_once(external_server, fresh_db):
    """Three processes (three ingest DAGs starting at once, say) on an empty warehouse: one applies
    the revisions, the others wait on the lock and find nothing left to do."""
    wh = fresh_db(external_server, migrated=False)
    env = {**os.environ, "CRM360_WAREHOUSE_URL": f"postgresql://{wh.user}@{wh.host}:{wh.port}/{wh.dbname}"}
    procs = [subprocess.Popen([sys.executable, "-m", "crm360", "migrate"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    assert sum("migrated the warehouse from revision (empty)" in out for out in outputs) == 1, outputs
    assert sum("nothing to do" in out for out in outputs) == 2, outputs
    assert revision(wh) == schema.head()


def test_a_warehouse_built_before_migrations_upgrades_in_place(external_server, fresh_db, tmp_path):
    """0.1's warehouse (its own DDL, a drift column in raw, quarantine, ledger, a run, an erasure
    request) gets exactly the schema a new warehouse gets, and keeps every row."""
    old = fresh_db(external_server, migrated=False)
    restore_0_1(old)
    with old.connect() as conn:  # and a table older still: the database's collation and a btree on _source_file
        conn.execute('alter table raw.web_events alter column _source_file type text collate "default"')
        conn.execute("drop index raw.web_events__source_file_brin")
        conn.execute("create index web_events__source_file_idx on raw.web_events (_source_file)")
        # 0.1 named the predicted amounts in euros; 0.2 in the reporting currency, values kept
        conn.execute("insert into predictions.customer_value (customer_key, expected_order_value_eur, "
                     "predicted_clv_eur, as_of_date) values ('K1', 12.5, 99.25, '2026-10-01')")
        # and an incremental staging table a build left, which dbt extends by the columns it has
        conn.execute("create schema if not exists staging")
        conn.execute("create table staging.stg_sales__order_lines (order_line_id text, unit_price_eur numeric(12, 2), "
                     "line_amount_eur numeric(14, 2))")
        conn.execute("insert into staging.stg_sales__order_lines values ('O1-1', 2.50, 5.00)")
        conn.commit()
        before = {t: conn.execute(f"select count(*) from {t}").fetchone()[0]  # noqa: S608 - fixed names
                  for t in ("raw.sales_customers", "raw.sales_orders", "raw.sales_order_lines", "raw.web_events",
                            "raw._quarantine", "audit.load_files", "audit.pipeline_runs", "audit.erasure_requests")}
    assert revision(old) is None
    with pytest.raises(schema.WarehouseOutdated, match="has no crm360 schema yet: run `crm360 migrate` first"):
        schema.require_current(old)

    result = schema.migrate(old)
    assert result.before is None and result.after == schema.head()
    new = fresh_db(external_server)
    assert catalog(old) == catalog(new)
    with old.connect() as conn:
        after = {t: conn.execute(f"select count(*) from {t}").fetchone()[0] for t in before}  # noqa: S608
        extra = conn.execute("select customer_id, _extra from raw.sales_customers order by 1").fetchall()
        drift = conn.execute("select column_name, change from audit.schema_drift order by 1").fetchall()
        pending = conn.execute("select status from audit.erasure_requests").fetchall()
        predicted = conn.execute("select customer_key, expected_order_value, predicted_clv "
                                 "from predictions.customer_value").fetchall()
        rates = conn.execute("select count(*) from raw.currency_rates").fetchone()
        staged = conn.execute("select order_line_id, unit_price, line_amount from staging.stg_sales__order_lines"
                              ).fetchall()
    assert after == before
    assert predicted == [("K1", 12.5, 99.25)] and rates == (0,)
    assert staged == [("O1-1", Decimal("2.50"), Decimal("5.00"))]
    # 0.1 added the column the export brought; its values are now kept in _extra
    assert extra == [("C1", {"loyalty_tier": "gold"}), ("C2", None)]
    assert drift == [("ab_test", "field kept in record"), ("loyalty_tier", "column kept in _extra")]
    assert pending == [("pending",)]
    # and the upgraded warehouse loads: the day's files are skipped by their digests, a new one loads
    landing = tmp_path / "landing"
    (landing / "web").mkdir(parents=True)
    (landing / "web" / "events_2026-11-01.jsonl").write_text(
        '{"event_id": "e9", "visitor_id": "v9", "occurred_at": "2026-11-01T08:00:00Z"}\n', encoding="utf-8")
    loaded = ingest.load_source(old, landing, "web", "after_upgrade:web")
    assert loaded.rows == {"events": 1}


def test_every_step_refuses_a_warehouse_older_or_newer_than_the_code(external_server, fresh_db, monkeypatch,
                                                                     capsys):
    wh = fresh_db(external_server, migrated=False)
    first = schema.revisions()[0]
    schema.migrate(wh, revision=first)
    url = f"postgresql://{wh.user}@{wh.host}:{wh.port}/{wh.dbname}"
    expected = f"is at schema revision {first}, this crm360 needs {schema.head()}: run `crm360 migrate`"
    with pytest.raises(schema.WarehouseOutdated, match=expected.replace("(", r"\(").replace(")", r"\)")):
        schema.require_current(wh)
    with pytest.raises(schema.WarehouseOutdated, match="run `crm360 migrate`"):
        ingest.load_source(wh, Path("."), "web", "b1")
    # in Airflow: failed at once, not retried (waiting does not migrate a warehouse)
    monkeypatch.setenv("AIRFLOW_CONN_CRM360_WAREHOUSE", url)
    with pytest.raises(AirflowFailException, match="run `crm360 migrate`"):
        crm360_airflow.run_step("gate_raw", "r1", batch_ids=("r1.1:web",), as_of=date(2026, 11, 1))
    monkeypatch.setenv("CRM360_WAREHOUSE_URL", url)
    assert cli(["forget", "--email", "someone@example.com"]) == 1
    assert "run `crm360 migrate`" in capsys.readouterr().err
    assert cli(["migrate", "--status"]) == 1
    assert cli(["migrate"]) == 0
    assert f"to {schema.head()}" in capsys.readouterr().out
    # a newer crm360 migrated it: this one must not write
    with wh.connect() as conn:
        conn.execute("update audit.schema_version set version_num = '9999'")
        conn.commit()
    with pytest.raises(schema.WarehouseOutdated, match="9999, which this crm360 does not know"):
        schema.require_current(wh)
    with pytest.raises(schema.WarehouseOutdated, match="a newer crm360 migrated it"):
        schema.migrate(wh)


def test_pending_migrations_wait_for_a_run_in_progress_and_a_current_warehouse_does_not(external_server,
                                                                                       fresh_db):
    wh = fresh_db(external_server, migrated=False)
    schema.migrate(wh, revision=schema.revisions()[0])
    with locks.holding(wh, ["ingest:web"], "a load", date(2026, 11, 1)):
        with pytest.raises(locks.RunLocked, match="cannot start ingest:web"):
            schema.migrate(wh, wait=0.5)
        assert revision(wh) == schema.revisions()[0]  # nothing applied under the running load
    schema.migrate(wh)
    with locks.holding(wh, ["ingest:web"], "a load", date(2026, 11, 1)):
        assert schema.migrate(wh, wait=0).applied == ()  # at the head: no need to wait for anyone


def test_a_failing_revision_changes_nothing(external_server, fresh_db, monkeypatch):
    """All revisions run in one transaction: one that fails leaves the warehouse as it was."""
    wh = fresh_db(external_server, migrated=False)
    from crm360.core.migrations import helpers

    def broken(*args, **kwargs):
        raise psycopg.errors.SyntaxError("a broken revision")

    monkeypatch.setattr(helpers, "ensure_roles", broken)
    with pytest.raises(schema.MigrationError, match="nothing was changed"):
        schema.migrate(wh)
    with wh.connect() as conn:
        assert conn.execute("select count(*) from pg_namespace where nspname in ('raw', 'audit')").fetchone() == (0,)
    monkeypatch.undo()
    assert schema.migrate(wh).after == schema.head()


def test_loads_and_gates_change_no_table(external_server, fresh_db, tmp_path):
    """Three sources loading side by side, one file with a column the contract does not know, then
    their raw gates: not one DDL command on a table of raw, audit or predictions (an event trigger
    records every command that defines or changes a table). The gates' working tables come and go
    in their own schema, scratch."""
    wh = fresh_db(external_server)
    with wh.connect() as conn:
        conn.execute("create table public.ddl_seen (tag text, object text)")
        conn.execute("""create function public.record_ddl() returns event_trigger language plpgsql as $$
                        declare c record; begin for c in select * from pg_event_trigger_ddl_commands() loop
                        insert into public.ddl_seen values (c.command_tag, c.object_identity); end loop; end $$""")
        conn.execute("create event trigger crm360_test_ddl on ddl_command_end execute function public.record_ddl()")
        conn.commit()
    try:
        landing = tmp_path / "landing"
        from crm360.synthetic.generate import GeneratorConfig, generate

        generate(landing, GeneratorConfig.preset("tiny", seed=4, malformed_rate=0.0))
        customers = sorted(landing.glob("sales/*/customers.csv"))[-1]
        lines = customers.read_text(encoding="utf-8").splitlines()
        customers.write_text("\n".join([lines[0] + ",loyalty_tier", *(line + ",gold" for line in lines[1:])]) + "\n",
                             encoding="utf-8")
        errors: list[BaseException] = []

        def load(source: str) -> None:
            try:
                batch = pipeline.ingest_source(wh, source, "side_by_side", landing, until=date(2026, 11, 1))
                pipeline.gate(wh, "raw", "side_by_side", [batch["batch_id"]], as_of=date(2026, 11, 1))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=load, args=(s,)) for s in ingest.SOURCES]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        with wh.connect() as conn:
            seen = conn.execute("select tag, object from public.ddl_seen").fetchall()
    finally:
        with wh.connect() as conn:
            conn.execute("drop event trigger if exists crm360_test_ddl")
            conn.commit()
    touched = [(tag, obj) for tag, obj in seen if obj and obj.split(".")[0] in OWNED]
    assert touched == []
    assert {obj.split(".")[0] for _, obj in seen if obj} == {"scratch"}  # the trigger saw the gates' tables
