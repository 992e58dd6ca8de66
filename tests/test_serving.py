"""Serving the users on one published run: roles connecting as themselves, the segments
marketing reads, CSV exports and their log, and (last, it deletes) the right to be forgotten."""

from __future__ import annotations

import csv
import json

import psycopg
import pytest

from crm360 import access, pipeline, privacy, publish, segments
from crm360.cli import main

pytestmark = pytest.mark.e2e

DENIED = psycopg.errors.InsufficientPrivilege


def _can(wh, query: str) -> bool:
    """Whether the role behind ``wh`` may run ``query`` (rolled back either way)."""
    with wh.connect() as conn:
        try:
            conn.execute(query)
            return True
        except DENIED:
            return False
        finally:
            conn.rollback()


def test_each_role_reads_and_writes_only_its_part(published):
    wh, _, _, _ = published
    bi = access.as_role(wh, access.BI_READER)
    marketing = access.as_role(wh, access.MARKETING)
    loader = access.as_role(wh, access.LOADER)
    transformer = access.as_role(wh, access.TRANSFORMER)

    # bi_reader: every published mart, read-only; nothing before marts
    for mart in pipeline.MARTS:
        assert _can(bi, f"select * from marts.{mart} limit 1"), mart
    assert not _can(bi, "delete from marts.customer_360")
    assert not _can(bi, "create table marts.mine (x int)")
    for table in ("raw.sales_customers", "staging.stg_sales__customers", "intermediate.int_customers_resolved",
                  "audit.load_files"):
        assert not _can(bi, f"select * from {table} limit 1"), table

    # marketing: the segment lists only
    assert _can(marketing, "select * from marts.segment_members limit 1")
    assert _can(marketing, "select * from marts.segments")
    assert _can(marketing, "select * from marts.segment__daily_call_list")
    for table in ("marts.customer_360", "marts.customer_identifiers", "marts.customer_call_list",
                  "raw.sales_customers", "raw.web_events", "staging.stg_sales__customers", "audit.segment_exports"):
        assert not _can(marketing, f"select * from {table} limit 1"), table
    assert not _can(marketing, "update marts.segment_members set email = 'x'")

    # loader: raw and the ledger; transformer: reads raw, writes what dbt builds
    assert _can(loader, "insert into raw.sales_products (product_id, list_price, _batch_id, _source_file, _loaded_at) "
                        "values ('P-role-test', '1', 'role-test', 'role-test.csv', now())")
    assert _can(loader, "select count(*) from audit.load_files")
    assert not _can(loader, "select * from marts.customer_360 limit 1")
    assert not _can(loader, "select * from staging.stg_sales__customers limit 1")
    assert _can(transformer, "select count(*) from raw.web_events")
    assert _can(transformer, "insert into staging.stg_sales__products select * from staging.stg_sales__products "
                             "limit 1")
    assert not _can(transformer, "delete from raw.web_events")
    assert not _can(transformer, "insert into audit.load_files select * from audit.load_files limit 1")


def test_marketing_sees_contacts_only_of_customers_who_consented(published):
    wh, _, _, _ = published
    with access.as_role(wh, access.MARKETING).connect() as conn:
        rows = conn.execute("select customer_key, full_name, email, phone, has_marketing_consent "
                            "from marts.segment_members").fetchall()
    with wh.connect() as conn:
        truth = {r[0]: r[1:] for r in conn.execute(
            "select customer_key, full_name, email, phone, has_marketing_consent from marts.customer_360")}
    consented = [r for r in rows if r[4]]
    masked = [r for r in rows if not r[4]]
    assert consented and masked
    for key, name, email, phone, consent in rows:
        t_name, t_email, t_phone, t_consent = truth[key]
        assert consent == t_consent
        if consent:
            assert (name, email, phone) == (t_name, t_email, t_phone)
            continue
        assert email is None or (email != t_email and email.startswith(t_email[0] + "***@")
                                 and email.endswith(t_email.split("@")[1]))
        assert phone is None or (phone == "***" + t_phone[-2:])
        assert name is None or (name != t_name and all(len(p) == 2 and p.endswith(".") for p in name.split()))


def test_grants_survive_the_swap_and_readers_never_see_a_build(db):
    """Published marts keep their readers; the schema being built and the replaced one have none."""
    pipeline.prepare(db)
    bi = access.as_role(db, access.BI_READER)
    with db.connect(autocommit=True) as conn:
        for version in (1, 2):
            conn.execute(f"create schema {publish.BUILD}")
            conn.execute(f"create table {publish.BUILD}.customer_360 as select {version} as version")
            conn.execute(f"grant select on {publish.BUILD}.customer_360 to bi_reader")  # as dbt's grants do
            assert not _can(bi, f"select * from {publish.BUILD}.customer_360")
            publish.publish(db, f"run{version}")
            with bi.connect() as reader:
                assert reader.execute("select version from marts.customer_360").fetchone()[0] == version
            if version == 2:
                assert not _can(bi, f"select * from {publish.PREVIOUS}.customer_360")


def test_segments_are_sized_and_their_history_recorded(published):
    wh, _, _, _ = published
    defined = {s.name: s for s in segments.load()}
    listed = {r["segment_name"]: r for r in segments.list_segments(access.as_role(wh, access.MARKETING))}
    assert set(listed) == set(defined)
    with wh.connect() as conn:
        for name, seg in defined.items():
            row = listed[name]
            assert row["version"] == seg.version
            source = f"marts.{seg.source}"
            expected = conn.execute(f"select count(*) from {source} where {seg.filter_sql}").fetchone()[0]
            assert row["customers"] == expected, name
            assert conn.execute(f"select count(*) from marts.segment__{name}").fetchone()[0] == expected
        # independent of the filter SQL: two segments recounted from their meaning
        c360 = conn.execute("select lifecycle_stage, email from marts.customer_360").fetchall()
        assert listed["dormant_prospects"]["customers"] == sum(
            1 for stage, email in c360 if stage == "dormant_prospect" and email is not None)
        assert listed["daily_call_list"]["customers"] == conn.execute(
            "select count(*) from marts.customer_call_list").fetchone()[0] > 0
        history = dict(conn.execute("select segment_name, customers from audit.segment_sizes "
                                    "where run_id = 'first'").fetchall())
    assert history == {name: row["customers"] for name, row in listed.items()}


def test_export_writes_the_whole_list_without_formulas_and_logs_it(published, tmp_path, monkeypatch, capsys):
    wh, settings, _, _ = published
    with wh.connect() as conn:  # a source system let a formula into a city name
        conn.execute("""update marts.segment_members set city = '=HYPERLINK("http://example.invalid","x")'
                        where segment_name = 'dormant_prospects'""")
        size = conn.execute("select customers from marts.segments "
                            "where segment_name = 'dormant_prospects'").fetchone()[0]
        conn.commit()
    monkeypatch.setenv("CRM360_WAREHOUSE_URL", wh.conninfo)
    monkeypatch.setenv("CRM360_HOME", str(settings.home))
    out = tmp_path / "dormant.csv"
    assert main(["segments", "export", "dormant_prospects", "-o", str(out), "--exported-by", "campaign-7"]) == 0
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == size > 0
    assert list(rows[0]) == list(segments.MEMBER_COLUMNS)
    assert all(r["city"].startswith("'=HYPERLINK") for r in rows)
    assert main(["segments", "export", "no_such_segment"]) == 1
    assert "no segment 'no_such_segment'; published segments: daily_call_list" in capsys.readouterr().err
    with wh.connect() as conn:
        log = conn.execute("select exported_by, db_role, segment_name, segment_version, row_count, destination "
                           "from audit.segment_exports").fetchall()
    version = {s.name: s.version for s in segments.load()}["dormant_prospects"]
    assert log == [("campaign-7", "marketing", "dormant_prospects", version, size, str(out.resolve()))]


def _person(conn) -> dict:
    """A customer with a shop account, an e-mail, tickets and web visits, and a segment membership."""
    row = conn.execute("""
        select c.customer_key, c.email, c.shop_customer_ids, c.visitor_ids, m.segment_name
        from marts.customer_360 as c
        inner join marts.segment_members as m on c.customer_key = m.customer_key
        where c.customer_type = 'shop_customer' and c.email is not null and c.tickets > 0
          and cardinality(c.visitor_ids) > 0 and c.orders_completed > 0
        order by c.customer_key limit 1""").fetchone()
    assert row, "the tiny preset has a customer with every kind of record"
    return dict(zip(["customer_key", "email", "shop_ids", "visitor_ids", "segment"], row, strict=True))


def _traces(conn, p: dict) -> dict[str, int]:
    """Rows anywhere in the warehouse that still carry the person."""
    counts = {
        "raw.sales_customers": ("select count(*) from raw.sales_customers where customer_id = any(%(ids)s) "
                                "or lower(trim(email)) = %(email)s"),
        "raw.sales_orders": "select count(*) from raw.sales_orders where customer_id = any(%(ids)s)",
        "raw.service_tickets": ("select count(*) from raw.service_tickets "
                                "where record ->> 'customer_ref' = any(%(ids)s) "
                                "or lower(trim(record -> 'requester' ->> 'email')) = %(email)s"),
        "raw.web_events": ("select count(*) from raw.web_events where record ->> 'visitor_id' = any(%(visitors)s) "
                           "or lower(trim(record ->> 'email')) = %(email)s"),
        "staging.stg_sales__customers": "select count(*) from staging.stg_sales__customers where email = %(email)s",
        "staging.stg_sales__orders": "select count(*) from staging.stg_sales__orders where customer_id = any(%(ids)s)",
        "staging.stg_web__events": "select count(*) from staging.stg_web__events where visitor_id = any(%(visitors)s)",
        "intermediate.int_web_events_sessionized": ("select count(*) from intermediate.int_web_events_sessionized "
                                                    "where visitor_id = any(%(visitors)s)"),
        "marts.customer_360": ("select count(*) from marts.customer_360 "
                               "where customer_key = %(key)s or email = %(email)s"),
        "marts.customer_identifiers": ("select count(*) from marts.customer_identifiers "
                                       "where identifier_value = any(%(ids)s || %(visitors)s || array[%(email)s])"),
        "marts.segment_members": "select count(*) from marts.segment_members where customer_key = %(key)s",
        "predictions.customer_value": "select count(*) from predictions.customer_value where customer_key = %(key)s",
    }
    args = {"ids": p["shop_ids"], "visitors": p["visitor_ids"], "email": p["email"], "key": p["customer_key"]}
    return {t: conn.execute(q, args).fetchone()[0] for t, q in counts.items()}


def test_a_forgotten_customer_is_removed_from_every_layer_and_export(published, tmp_path):
    wh, settings, landing, as_of = published
    with wh.connect() as conn:
        person = _person(conn)
        assert all(_traces(conn, person)[t] > 0 for t in ("raw.sales_customers", "raw.web_events", "marts.customer_360",
                                                          "staging.stg_web__events"))
        customers_before = conn.execute("select count(*) from marts.customer_360").fetchone()[0]
    export = tmp_path / "list.csv"
    with export.open("w", encoding="utf-8", newline="") as f:
        segments.export_csv(access.as_role(wh, access.MARKETING), person["segment"], f, "test", str(export))
    assert person["customer_key"] in export.read_text()

    request = privacy.request_erasure(wh, "email", person["email"].upper() + " ", "dpo", "ticket 42")
    pipeline.run_all(as_of, "after_forget", wh, landing=landing, settings=settings)

    with wh.connect() as conn:
        left = _traces(conn, person)
        assert left == dict.fromkeys(left, 0), left
        assert conn.execute("select count(*) from marts.customer_360").fetchone()[0] == customers_before - 1
        assert conn.execute("select to_regclass('marts__previous')").fetchone()[0] is None
        status, found = conn.execute("select status, customers_found from audit.erasure_requests "
                                     "where request_id = %s", (request,)).fetchone()
        assert (status, found) == ("applied", 1)
        # the request itself keeps no readable trace of the person
        for table in ("audit.erasure_requests", "audit.erased_identifiers"):
            dump = json.dumps(conn.execute(f"select json_agg(t) from {table} as t").fetchone()[0])
            assert person["email"] not in dump and person["shop_ids"][0] not in dump
    assert person["customer_key"] not in export.read_text()
    assert export.read_text().startswith("segment_name,customer_key")

    # a source sends the person again: a changed drop is re-loaded whole, and the next run cleans it
    drop = next(p for p in sorted((landing / "sales").rglob("customers.csv"))
                if person["shop_ids"][0] in p.read_text(encoding="utf-8"))
    lines = drop.read_text(encoding="utf-8").splitlines()
    again = next(line for line in lines if line.startswith(person["shop_ids"][0] + ","))
    drop.write_text("\n".join([*lines, again]) + "\n", encoding="utf-8")
    pipeline.run_all(as_of, "after_resend", wh, landing=landing, settings=settings)
    with wh.connect() as conn:
        reloaded = conn.execute("select batch_id from audit.load_files where source_file like %s",
                                (f"%{drop.parent.name}/{drop.name}",)).fetchone()[0]
        assert reloaded.startswith("after_resend"), reloaded
        left = _traces(conn, person)
        assert left == dict.fromkeys(left, 0), left
