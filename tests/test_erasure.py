"""The right to be forgotten, end to end: one customer with an account, tickets, web visits
and a place in an exported list is asked to be forgotten; the next run removes them from every
layer and the export, and a source sending them again does not bring them back."""

from __future__ import annotations

import json

import pytest

from crm360 import pipeline, privacy
from crm360.core import access
from crm360.serve import segments

pytestmark = pytest.mark.e2e


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


def test_a_forgotten_customer_is_removed_from_every_layer_and_export(published):
    wh, settings, landing, as_of = published
    with wh.connect() as conn:
        person = _person(conn)
        assert all(_traces(conn, person)[t] > 0 for t in ("raw.sales_customers", "raw.web_events", "marts.customer_360",
                                                          "staging.stg_web__events"))
        customers_before = conn.execute("select count(*) from marts.customer_360").fetchone()[0]
    export = segments.export_path("list.csv", settings)  # in the export folder, where an erasure looks
    segments.export_file(access.as_role(wh, access.MARKETING), person["segment"], export, "test")
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

    # a source sends the person again: a changed drop is re-loaded whole, and the next run's
    # erasure step (which runs before dbt reads raw) takes them out of what was loaded since
    drop = next(p for p in sorted((landing / "sales").rglob("customers.csv"))
                if person["shop_ids"][0] in p.read_text(encoding="utf-8"))
    lines = drop.read_text(encoding="utf-8").splitlines()
    again = next(line for line in lines if line.startswith(person["shop_ids"][0] + ","))
    drop.write_text("\n".join([*lines, again]) + "\n", encoding="utf-8")
    pipeline.ingest_source(wh, "sales", "after_resend", landing, settings, until=as_of)
    with wh.connect() as conn:
        reloaded = conn.execute("select batch_id from audit.load_files where source_file like %s",
                                (f"%{drop.parent.name}/{drop.name}",)).fetchone()[0]
        assert reloaded.startswith("after_resend"), reloaded
        assert _traces(conn, person)["raw.sales_customers"] > 0
    erased = pipeline.erase(wh, "after_resend")
    assert erased["requests"] == 0 and erased["rows_deleted"]["raw.sales_customers"] >= 2
    with wh.connect() as conn:
        left = _traces(conn, person)
        assert left == dict.fromkeys(left, 0), left
