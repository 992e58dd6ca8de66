"""Each kind of bad batch is stopped before publication: the marts BI reads stay
exactly as they were, and the rejected rows leave raw so a later run cannot use them."""

import json
import shutil
from datetime import timedelta

import pytest
from conftest import MARTS_CHECKSUM

from crm360 import ingest, pipeline
from crm360.ingest import IngestError, ledger
from crm360.quality.gates import GateFailed
from crm360.transform.dbt import DbtError

ORDERS_HEADER = "order_id,customer_id,ordered_at,status,currency,updated_at\n"


def _orders(day, *rows):
    (day / "orders.csv").write_text(ORDERS_HEADER + "".join(r + "\n" for r in rows))


def nulls(root, as_of):
    _orders(root / "sales" / as_of.isoformat(), f"O_NULL,,{as_of}T10:00:00+00:00,completed,EUR,")
    return GateFailed, "raw_sales_orders.customer_id: expect_column_values_to_not_be_null"


def empty_strings(root, as_of):
    _orders(root / "sales" / as_of.isoformat(), f'O_EMPTY,"  ",{as_of}T10:00:00+00:00,completed,EUR,')
    return GateFailed, "raw_sales_orders.customer_id: expect_column_values_to_not_be_null"


def conflicting_duplicates(root, as_of):
    _orders(root / "sales" / as_of.isoformat(),
            f"O_DUP,C0000001,{as_of}T10:00:00+00:00,completed,EUR,",
            f"O_DUP,C0000001,{as_of}T10:00:00+00:00,returned,EUR,")
    return GateFailed, "raw_sales_orders_conflicts.versions_in_file"


def out_of_range_amount(root, as_of):
    day = root / "sales" / as_of.isoformat()
    _orders(day, f"O_NEG,C0000001,{as_of}T10:00:00+00:00,completed,EUR,")
    (day / "order_lines.csv").write_text(
        "order_id,line_number,product_id,quantity,unit_price\nO_NEG,1,P00001,1,-250.00\n")
    return GateFailed, "raw_sales_order_lines.unit_price: expect_column_values_to_be_between"


def shifted_time_zone(root, as_of):
    # local time written with a UTC marker: a late-evening event lands on the next day
    event = {"event_id": "e_shift", "visitor_id": "v-shift", "event_type": "page_view",
             "occurred_at": f"{as_of + timedelta(days=2)}T01:30:00Z"}  # after the run's date
    (root / "web" / f"events_{as_of}.jsonl").write_text(json.dumps(event) + "\n")
    return GateFailed, "raw_web_events.is_in_future"


def missing_offset(root, as_of):
    _orders(root / "sales" / as_of.isoformat(), f"O_NAIVE,C0000001,{as_of}T10:00:00,completed,EUR,")
    return GateFailed, "raw_sales_orders.ordered_at: expect_column_values_to_match_regex"


def dropped_json_field(root, as_of):
    ticket = {"id": "T_DROP", "status": "open", "created_at": f"{as_of}T09:00:00+00:00",
              "requester": {"email": "someone@example.com", "name": "Some One"}}  # no "type"
    (root / "service" / f"tickets_{as_of}.json").write_text(json.dumps({"tickets": [ticket]}))
    return GateFailed, "raw_service_tickets.ticket_type: expect_column_values_to_not_be_null"


def dropped_csv_column(root, as_of):
    (root / "sales" / as_of.isoformat() / "orders.csv").write_text(
        f"order_id,customer_id,ordered_at,currency\nO_X,C0000001,{as_of}T10:00:00+00:00,EUR\n")
    return IngestError, r"orders.csv: line 1: required column\(s\) missing: status"


def unknown_product(root, as_of):
    # passes every raw check; the dbt relationships test on order lines stops it
    day = root / "sales" / as_of.isoformat()
    _orders(day, f"O_UNK,C0000001,{as_of}T10:00:00+00:00,completed,EUR,")
    (day / "order_lines.csv").write_text(
        "order_id,line_number,product_id,quantity,unit_price\nO_UNK,1,P_NOT_IN_CATALOGUE,1,10.00\n")
    return DbtError, r"relationships_stg_sales__order_lines_product_id"


CASES = [unknown_product, nulls, empty_strings, conflicting_duplicates, out_of_range_amount, shifted_time_zone,
         missing_offset, dropped_json_field, dropped_csv_column]


def _raw_counts(wh):
    with wh.connect() as conn:
        return conn.execute("""
            select (select count(*) from raw.sales_orders), (select count(*) from raw.sales_order_lines),
                   (select count(*) from raw.service_tickets), (select count(*) from raw.web_events),
                   (select count(*) from audit.load_files)""").fetchone()


@pytest.mark.e2e
@pytest.mark.parametrize("inject", CASES, ids=lambda f: f.__name__)
def test_bad_batch_is_blocked_before_publication(published, tmp_path, inject):
    wh, settings, landing, as_of = published
    with wh.connect() as conn:
        before = conn.execute(MARTS_CHECKSUM).fetchone()
    raw_before = _raw_counts(wh)
    bad = tmp_path / "landing"
    shutil.copytree(landing, bad)
    (bad / "sales" / as_of.isoformat()).mkdir()
    error, message = inject(bad, as_of)

    with pytest.raises(error, match=message):
        # the next day's run: it loads the drops dated before it, the bad one among them
        pipeline.run_all(as_of + timedelta(days=1), f"bad_{inject.__name__}", wh, landing=bad, settings=settings)

    with wh.connect() as conn:
        assert conn.execute(MARTS_CHECKSUM).fetchone() == before
    if error is DbtError:  # raw was clean: the batch stays, and fails dbt again until the source is fixed
        assert _raw_counts(wh) != raw_before
        ledger.unload(wh, [f"bad_{inject.__name__}.1:{s}" for s in ingest.SOURCES], "taken out by hand",
                      including_gated=True)
    assert _raw_counts(wh) == raw_before, "the rejected batch must not stay in raw"
