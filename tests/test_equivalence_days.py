"""Four scheduled days through the cases an incremental build can get wrong, each day's published
marts equal to a full rebuild of the same raw data (issue 21: correctness first).

A generated world (tiny preset) is the context; on top of it tests/days.py writes the records each
case needs, so every case is sure to happen:

- day 1: a guest checks out with an e-mail; two accounts of one person exist apart (one with a
  phone); a customer with two old orders, the last 178 days before the as-of date; a plain order;
- day 2: the guest registers with that e-mail (a shop record e-mail joins the guest record); the
  second account's record gets the first one's phone and places an order (a shop record phone
  joins them); a web event of day 1 arrives late, between two of a visitor's sessions; the plain
  order is partly refunded (a later version of it);
- day 3: day 2's order-line file is replaced (a unit price changed, a line taken out); the late
  event is delivered again; a customer is forgotten; the old customer gets no rows and crosses from
  at_risk to dormant as the as-of date moves;
- day 4: an ordinary day, but for the refunded order's first version arriving late, and an order and
  a login of the forgotten person.

After each day's run (crm360.pipeline.run_all, the DAGs' steps in one process) every published mart,
and every staging and intermediate table, must equal row for row what `dbt build --full-refresh`
gives (tests/fingerprint.py); and the cases' own facts are asserted, so the test cannot pass
without them happening. Day 1 is not compared: a fresh warehouse's first build is a full one."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal

import pytest
from conftest import make_settings
from days import Scenario
from fingerprint import incremental_equals_full_rebuild

from crm360 import pipeline, privacy
from crm360.synthetic.generate import GeneratorConfig, generate, generate_next_day

pytestmark = pytest.mark.e2e

GUEST, REGISTERED = "G9000000001", "C9000001"  # one person: a guest checkout, later an account
TWIN_A, TWIN_B = "C9000002", "C9000003"  # one person's two accounts, joined by a phone on day 2
REFUNDED, OLD = "C9000004", "C9000005"  # a refunded order; a customer who goes dormant
GUEST_EMAIL, PHONE = "mira.guest@example.org", "+49 30 9000001"
VISITOR = "v-scenario-tomas"


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, clock(hour, minute), UTC)


def _config() -> GeneratorConfig:
    return GeneratorConfig.preset("tiny", seed=13, malformed_rate=0.0)


def key_of(conn, shop_id: str) -> str | None:
    row = conn.execute("select customer_key from marts.customer_identifiers where identifier_type = "
                       "'shop_customer_id' and identifier_value = %s", (shop_id,)).fetchone()
    return row[0] if row else None


def customer(conn, shop_id: str) -> dict:
    """The customer_360 row of the customer a shop record belongs to."""
    cur = conn.execute("select customer_key, shop_customer_id, orders_completed, revenue, refunded, tickets, "
                       "lifecycle_stage from marts.customer_360 where customer_key = %s", (key_of(conn, shop_id),))
    row = cur.fetchone()
    assert row is not None, f"{shop_id} belongs to no published customer"
    return dict(zip([c.name for c in cur.description], row, strict=True))


def sessions(conn, visitor: str) -> list[tuple[int, datetime, int]]:
    return conn.execute("select session_number, started_at, event_count from intermediate.int_web_events_sessionized "
                        "where visitor_id = %s order by session_number", (visitor,)).fetchall()


@pytest.mark.timeout(900)  # four days of a run and a full rebuild each
def test_four_days_of_merges_refunds_late_events_an_erasure_and_a_replaced_file_equal_a_full_rebuild(db, tmp_path):
    wh, landing = db, tmp_path / "landing"
    _, manifest = generate(landing, _config())
    settings = make_settings(tmp_path / "home", landing)
    day1 = date.fromisoformat(manifest["end_date"])
    day2, day3, day4 = (day1 + timedelta(days=n) for n in (1, 2, 3))
    scenario = Scenario(landing)

    def run(day: date, run_id: str, rebuild: bool = True) -> dict:
        """The scheduled run for the data of ``day`` (as of the next day), then the equivalence; returns
        the published customer_360 rows of the scenario's shop records, and the visitor's sessions."""
        as_of = day + timedelta(days=1)
        started = time.perf_counter()
        pipeline.run_all(as_of, run_id, wh, landing=landing, settings=settings)
        seconds = time.perf_counter() - started
        with wh.connect() as conn:  # what was published, before the rebuild writes marts__build
            facts = {shop_id: customer(conn, shop_id)
                     for shop_id in (GUEST, REGISTERED, TWIN_A, TWIN_B, REFUNDED, OLD)
                     if key_of(conn, shop_id)}
            facts["sessions"] = sessions(conn, VISITOR)
        started = time.perf_counter()
        if rebuild:
            incremental_equals_full_rebuild(wh, settings, as_of)
        print(f"{run_id}: the run {seconds:.0f} s, the full rebuild {time.perf_counter() - started:.0f} s")
        return facts

    # day 1: the base world and the day's hand-made records
    scenario.customer(day1, GUEST, "Mira", GUEST_EMAIL, account_type="guest", created_at=at(day1, 9))
    scenario.order(day1, "O9000000001", GUEST, at(day1, 9), (("P00001", 1, "25.00"), ("P00002", 2, "10.00")))
    scenario.customer(day1, TWIN_A, "Tomas", "tomas.a@example.org", PHONE)
    scenario.order(day1, "O9000000002", TWIN_A, at(day1, 10), (("P00003", 1, "30.00"),))
    scenario.customer(day1, TWIN_B, "Tomas", "tomas.b@example.org")
    scenario.order(day1, "O9000000003", TWIN_B, at(day1, 11), (("P00004", 1, "20.00"),))
    scenario.event(day1, "e-scenario-1", VISITOR, at(day1, 10), "login", "/account/login", customer_id=TWIN_A)
    scenario.event(day1, "e-scenario-2", VISITOR, at(day1, 12), "page_view", "/")
    scenario.customer(day1, REFUNDED, "Ilse", "ilse@example.org")
    scenario.order(day1, "O9000000004", REFUNDED, at(day1, 11), (("P00005", 2, "40.00"),))
    # the last order 178 days before day 1's as-of date: at_risk until the window of 180 days passes it on day 3
    last_order = day1 + timedelta(days=1) - timedelta(days=178)
    scenario.customer(day1, OLD, "Otto", "otto@example.org", created_at=at(last_order - timedelta(days=90), 8))
    scenario.order(day1, "O9000000005", OLD, at(last_order - timedelta(days=60), 12), (("P00006", 1, "50.00"),))
    scenario.order(day1, "O9000000006", OLD, at(last_order, 12), (("P00007", 1, "60.00"),))
    scenario.write(day1)
    # a fresh warehouse's first build is a full one (no incremental model exists yet): comparing it with
    # a full rebuild would only cost time
    one = run(day1, "day1", rebuild=False)
    assert one[GUEST]["revenue"] == Decimal("45.00") and REGISTERED not in one
    assert one[TWIN_A]["customer_key"] != one[TWIN_B]["customer_key"]
    assert one[REFUNDED]["revenue"] == Decimal("80.00")
    assert one[OLD]["lifecycle_stage"] == "at_risk"
    assert len(one["sessions"]) == 2

    # day 2: a registration, a phone joining two accounts, a late event, a refund
    generate_next_day(landing, _config())
    scenario.customer(day2, REGISTERED, "Mira", "Mira.Guest@Example.org")
    scenario.order(day2, "O9000000007", REGISTERED, at(day2, 9), (("P00008", 1, "15.00"),))
    scenario.customer(day2, TWIN_B, "Tomas", "tomas.b@example.org", PHONE, created_at=at(day1, 8),
                      updated_at=at(day2, 8))
    scenario.order(day2, "O9000000008", TWIN_B, at(day2, 10), (("P00009", 1, "40.00"), ("P00010", 1, "8.00")))
    scenario.event(day2, "e-scenario-3", VISITOR, at(day1, 11), "page_view", "/sale")  # late: day 1's
    scenario.ticket(day2, "T9000000001", GUEST_EMAIL, "Mira Scenario", at(day2, 12), customer_ref=REGISTERED)
    scenario.order(day2, "O9000000004", REFUNDED, at(day1, 11), status="partially_returned", refund="30.00",
                   updated_at=at(day2, 9))
    scenario.write(day2)
    two = run(day2, "day2")
    assert two[GUEST]["customer_key"] == two[REGISTERED]["customer_key"]
    assert two[REGISTERED]["shop_customer_id"] == REGISTERED  # the account anchors the person, the guest joins it
    assert (two[REGISTERED]["orders_completed"], two[REGISTERED]["revenue"]) == (2, Decimal("60.00"))
    assert two[REGISTERED]["tickets"] == 1
    assert two[TWIN_A]["customer_key"] == two[TWIN_B]["customer_key"]
    assert two[TWIN_A]["revenue"] == Decimal("98.00")
    assert (two[REFUNDED]["revenue"], two[REFUNDED]["refunded"]) == (Decimal("50.00"), Decimal("30.00"))
    assert [(n, s, e) for n, s, e in two["sessions"]] == [(1, at(day1, 10), 1), (2, at(day1, 11), 1),
                                                          (3, at(day1, 12), 1)]
    assert two[OLD]["lifecycle_stage"] == "at_risk"
    with wh.connect() as conn:  # a generated customer with orders, tickets and web visits is forgotten next
        forgotten = conn.execute(
            "select shop_customer_id from marts.customer_360 where customer_type = 'shop_customer' "
            "and shop_customer_id like 'C0%%' and orders_completed > 0 and tickets > 0 and web_sessions > 0 "
            "order by revenue desc, shop_customer_id limit 1").fetchone()[0]
        browsers = [v for (v,) in conn.execute(
            "select identifier_value from marts.customer_identifiers where identifier_type = 'visitor_id' "
            "and customer_key = %s order by 1", (key_of(conn, forgotten),))]
    assert browsers

    def traces(conn) -> dict[str, int]:
        """The forgotten person's rows where the sources deliver them and where dbt builds from them."""
        person = {"id": forgotten, "browsers": browsers}
        return {table: conn.execute(f"select count(*) from {table} where {where}", person).fetchone()[0]  # noqa: S608
                for table, where in (
                    ("raw.sales_orders", "trim(customer_id) = %(id)s"),
                    ("raw.web_events",
                     "record ->> 'customer_id' = %(id)s or record ->> 'visitor_id' = any(%(browsers)s)"),
                    ("staging.stg_sales__orders", "customer_id = %(id)s"),
                    ("intermediate.int_web_events_sessionized", "visitor_id = any(%(browsers)s)"))}
    with wh.connect() as conn:
        assert all(traces(conn).values()), traces(conn)

    # day 3: day 2's order lines corrected (a line's amount changed, a line taken out: only a rebuild of
    # the lines from all of raw drops it), an erasure, nothing for the old customer
    generate_next_day(landing, _config())
    lines = scenario.days[day2].order_lines
    assert [line["order_id"] for line in lines[-2:]] == ["O9000000008"] * 2
    lines[-2]["unit_price"] = "45.00"
    del lines[-1]
    scenario.write(day2)
    scenario.event(day3, "e-scenario-3", VISITOR, at(day1, 11), "page_view", "/sale")  # delivered again
    scenario.write(day3)
    request = privacy.request_erasure(wh, "shop_customer_id", forgotten, "dpo", "test", settings)
    three = run(day3, "day3")
    assert three[TWIN_B]["revenue"] == Decimal("95.00")
    assert three[OLD]["lifecycle_stage"] == "dormant"
    assert three["sessions"] == two["sessions"]  # an event delivered twice counts once
    with wh.connect() as conn:
        assert conn.execute("select status from audit.erasure_requests where request_id = %s",
                            (request,)).fetchone() == ("applied",)
        assert key_of(conn, forgotten) is None
        assert not any(traces(conn).values()), traces(conn)

    # day 4: an ordinary day, on which the forgotten person's browser logs in again and an order of theirs
    # arrives late: the erasure step deletes such rows from every later load before dbt reads them; and the
    # refunded order's first version arrives late (on day 3, a replaced sales file rebuilt the sales
    # models from all of raw; today they are built incrementally)
    generate_next_day(landing, _config())
    scenario.order(day4, "O9000000004", REFUNDED, at(day1, 11), updated_at=at(day1, 11))
    scenario.order(day4, "O9000000009", REGISTERED, at(day4, 9), (("P00010", 1, "12.50"),))
    scenario.order(day4, "O9000000010", forgotten, at(day3, 18), (("P00011", 1, "9.99"),))
    scenario.event(day4, "e-scenario-4", browsers[0], at(day4, 8), "login", "/account/login", customer_id=forgotten)
    scenario.write(day4)
    four = run(day4, "day4")
    assert four[REGISTERED]["revenue"] == Decimal("72.50")
    assert four[OLD]["lifecycle_stage"] == "dormant"
    assert four[REFUNDED]["revenue"] == Decimal("50.00")  # a stale version does not undo the refund
    with wh.connect() as conn:
        assert key_of(conn, forgotten) is None
        assert not any(traces(conn).values()), traces(conn)
