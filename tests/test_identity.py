"""Identity resolution: each over- and under-merging trap on hand-made records, key
stability between runs, and the generator's ground truth (which shop records are
one person) on generated data with shared mailboxes."""

from __future__ import annotations

import csv
import json
import uuid
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import make_settings

from crm360 import ingest, pipeline
from crm360.core import schema, warehouse
from crm360.ingest import ledger
from crm360.ingest.sources import CONTRACT
from crm360.synthetic.generate import GeneratorConfig, generate
from crm360.synthetic.model import SHARED_MAILBOXES

DAY1 = date(2026, 3, 2)
DAY2 = DAY1 + timedelta(days=1)

CUSTOMER_COLUMNS = next(t for t in CONTRACT["sales"] if t.table == "sales_customers").columns


def _customer(cid: str, first: str, last: str, email: str = "", phone: str = "", kind: str = "registered",
              created: str = "2026-01-10T10:00:00+00:00") -> dict:
    return {"customer_id": cid, "account_type": kind, "first_name": first, "last_name": last, "email": email,
            "phone": phone, "country_code": "DE", "city": "Berlin", "created_at": created, "updated_at": created}


# (customer rows, web events, tickets) of the first day: each block is one trap
CUSTOMERS_DAY1 = [
    # a chain: an account, a guest record sharing its phone (spelt differently) under
    # another e-mail, and that e-mail given on the web and to the helpdesk -> one customer
    _customer("C100", "Anna", "Alpha", "anna@alpha.example", "+49 30 1111111"),
    _customer("G100", "Anna", "Alpha", "anna.other@alpha.example", "030 1111111", kind="guest",
              created="2026-02-01T10:00:00+00:00"),
    # a shared mailbox: two guests who are not one person
    _customer("G201", "Bob", "Brown", "info@company.example", kind="guest"),
    _customer("G202", "Carl", "Clark", " Info@Company.example ", kind="guest"),
    # a family address on two people's accounts
    _customer("C300", "Dora", "Dahl", "family@home.example"),
    _customer("C301", "Emil", "Dahl", "family@home.example"),
    # placeholder phones
    _customer("C400", "Finn", "Fox", "finn@fox.example", "0000000000"),
    _customer("C401", "Gina", "Gray", "gina@gray.example", "+49 000 000000"),
    # one landline on two people's accounts
    _customer("C500", "Hans", "Hall", "hans@hall.example", "+49 30 5555555"),
    _customer("C501", "Ida", "Hall", "ida@hall.example", "(030) 555 5555"),
    # accounts a kiosk browser logs into
    *[_customer(f"C60{i}", name, "Kiosk", f"{name.lower()}@kiosk.example")
      for i, name in enumerate(("Karl", "Lena", "Mia", "Nils"))],
    # a guest checkout with the account's e-mail, and one from before a change of surname
    _customer("C700", "Jan", "Jung", "jan@jung.example", created="2026-01-20T10:00:00+00:00"),
    _customer("G700", "Jan", "Jung", "JAN@jung.example", kind="guest", created="2026-02-20T10:00:00+00:00"),
    _customer("G701", "Jan", "Old", "jan@jung.example", kind="guest", created="2026-01-05T10:00:00+00:00"),
    # an address on more shop records than any person has
    *[_customer(f"G9{i:02d}", "Max", "Bot", "max.bot@bot.example", kind="guest") for i in range(51)],
]

EVENTS_DAY1 = [
    {"visitor_id": "v-anna", "event_type": "signup", "email": "anna.other@alpha.example"},
    *[{"visitor_id": "v-kiosk", "event_type": "login", "customer_id": f"C60{i}"} for i in range(4)],
    {"visitor_id": "v-jan", "event_type": "login", "customer_id": "G700"},
    {"visitor_id": "v-anon", "event_type": "page_view"},
    {"visitor_id": "v-prospect", "event_type": "signup", "email": "newsletter.fan@mail.example"},
]

TICKETS_DAY1 = [
    {"id": "T1", "requester": {"email": "anna.other@alpha.example", "name": "Anna Alpha"}, "customer_ref": None},
    {"id": "T2", "requester": {"email": "info@company.example", "name": "Office"}, "customer_ref": None},
    {"id": "T3", "requester": {"email": "hans@hall.example", "name": "Hans Hall"}, "customer_ref": "C500"},
]


def _write_day(landing: Path, day: date, customers: list[dict], events: list[dict], tickets: list[dict],
               orders: list[tuple[str, str, str]] = ()) -> None:
    folder = landing / "sales" / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = f"{(day - timedelta(days=1)).isoformat()}T12:00:00+00:00"
    with (folder / "customers.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CUSTOMER_COLUMNS)
        writer.writeheader()
        for row in customers:
            writer.writerow({c: row.get(c, "") for c in CUSTOMER_COLUMNS})
    (folder / "products.csv").write_text("product_id,product_name,category,list_price\nP1,Mug,kitchen,10.00\n",
                                         encoding="utf-8")
    with (folder / "orders.csv").open("w", newline="", encoding="utf-8") as f:
        f.write("order_id,customer_id,ordered_at,status,currency,channel,refund_amount,updated_at\n")
        for order_id, customer_id, _ in orders:
            f.write(f"{order_id},{customer_id},{stamp},completed,EUR,web,,{stamp}\n")
    with (folder / "order_lines.csv").open("w", newline="", encoding="utf-8") as f:
        f.write("order_id,line_number,product_id,quantity,unit_price\n")
        for order_id, _, price in orders:
            f.write(f"{order_id},1,P1,1,{price}\n")
    web = landing / "web"
    web.mkdir(parents=True, exist_ok=True)
    with (web / f"events_{day.isoformat()}.jsonl").open("w", encoding="utf-8") as f:
        for i, event in enumerate(events):
            f.write(json.dumps({"event_id": f"{day.isoformat()}-{i}", "page": "/", "occurred_at": stamp,
                                **event}) + "\n")
    service = landing / "service"
    service.mkdir(parents=True, exist_ok=True)
    records = [{"type": "question", "status": "solved", "created_at": stamp, "updated_at": stamp,
                "solved_at": stamp, "satisfaction": None, "channel": "email", "direction": "inbound", **t}
               for t in tickets]
    (service / f"tickets_{day.isoformat()}.json").write_text(
        json.dumps({"exported_at": stamp, "tickets": records}), encoding="utf-8")


@pytest.fixture(scope="module")
def resolved(embedded_server, tmp_path_factory):
    """The hand-made traps loaded and built, then a second day added and built again."""
    root = tmp_path_factory.mktemp("identity")
    landing = root / "landing"
    _write_day(landing, DAY1, CUSTOMERS_DAY1, EVENTS_DAY1, TICKETS_DAY1,
               orders=[("O1", "C100", "10.00"), ("O2", "G100", "20.00"), ("O3", "G700", "5.00")])
    name = f"crm360_test_{uuid.uuid4().hex[:10]}"
    wh = warehouse.ensure_database(embedded_server, name)
    settings = make_settings(root / "home", landing)
    _build(wh, landing, settings, DAY2, "identity_day_1")
    first = _snapshot(wh)
    yield wh, settings, landing, first
    warehouse.drop_database(embedded_server, name)


def _build(wh, landing: Path, settings, as_of: date, run_id: str) -> None:
    """Load and build, then publish without the gates: these tests are about the models (the loads are
    marked gated by hand, so the build reads them)."""
    schema.migrate(wh)
    for source in ingest.SOURCES:
        batch = pipeline.ingest_source(wh, source, run_id, landing, settings, until=as_of)["batch_id"]
        ledger.gated(wh, [batch])
    pipeline.transform(wh, as_of, settings)
    pipeline.publish_marts(wh, run_id)


def _snapshot(wh) -> dict[str, str]:
    """identifier_id -> customer_key of every linked identifier."""
    with wh.connect() as conn:
        rows = conn.execute("select identifier_id, customer_key from marts.customer_identifiers "
                            "where customer_key is not null").fetchall()
    return dict(rows)


def test_a_chain_of_shared_identifiers_is_one_customer(resolved):
    wh, _, _, keys = resolved
    chain = ["shop_customer_id:C100", "email:anna@alpha.example", "phone:+49301111111",
             "shop_customer_id:G100", "email:anna.other@alpha.example", "visitor_id:v-anna"]
    assert {keys[i] for i in chain} == {keys["shop_customer_id:C100"]}
    with wh.connect() as conn:
        row = conn.execute("select shop_customer_id, shop_record_count, revenue, tickets, email "
                           "from marts.customer_360 where customer_key = %s",
                           (keys["shop_customer_id:C100"],)).fetchone()
    # anchored on the account; the guest's order and the ticket sent from the other e-mail count
    assert row == ("C100", 2, 30, 1, "anna@alpha.example")


def test_shared_mailboxes_link_nobody(resolved):
    wh, _, _, keys = resolved
    assert keys["shop_customer_id:G201"] != keys["shop_customer_id:G202"]
    assert "email:info@company.example" not in keys
    with wh.connect() as conn:
        reason = conn.execute("select blocked_reason from marts.customer_identifiers "
                              "where identifier_id = 'email:info@company.example'").fetchone()[0]
        # the ticket from the shared mailbox names no customer: it is attributed to nobody
        attributed = conn.execute("select customer_key from intermediate.int_tickets_attributed "
                                  "where ticket_id = 'T2'").fetchone()[0]
    assert reason == "shared mailbox"
    assert attributed is None


def test_contacts_on_several_people_link_nobody(resolved):
    wh, _, _, keys = resolved
    assert keys["shop_customer_id:C300"] != keys["shop_customer_id:C301"]
    assert keys["shop_customer_id:C500"] != keys["shop_customer_id:C501"]
    with wh.connect() as conn:
        blocked = dict(conn.execute(
            "select identifier_id, blocked_reason from marts.customer_identifiers where blocked_reason is not null"
        ).fetchall())
        links = conn.execute(
            "select count(*) from marts.customer_identity_links where not is_used "
            "and to_identifier_id in ('email:family@home.example', 'phone:+49305555555')").fetchone()[0]
    assert blocked["email:family@home.example"] == "on several people"
    assert blocked["phone:+49305555555"] == "on several people"
    assert blocked["email:max.bot@bot.example"] == "on too many records"
    assert links == 4  # each account's link to the shared contact is kept, as blocked
    # the ticket naming its customer still belongs to him
    with wh.connect() as conn:
        hans = conn.execute("select tickets from marts.customer_360 where shop_customer_id = 'C500'").fetchone()[0]
    assert hans == 1


def test_placeholder_phones_are_no_identifier(resolved):
    _, _, _, keys = resolved
    assert keys["shop_customer_id:C400"] != keys["shop_customer_id:C401"]
    assert not any(i.startswith("phone:") and "0000" in i for i in keys)


def test_a_shared_device_links_nobody(resolved):
    wh, _, _, keys = resolved
    accounts = {keys[f"shop_customer_id:C60{i}"] for i in range(4)}
    assert len(accounts) == 4
    assert keys["visitor_id:v-kiosk"] not in accounts
    with wh.connect() as conn:
        kiosk = conn.execute("select customer_type from marts.customer_360 where customer_key = %s",
                             (keys["visitor_id:v-kiosk"],)).fetchone()[0]
    assert kiosk == "anonymous_visitor"


def test_guest_checkouts_join_the_account_even_after_a_change_of_surname(resolved):
    wh, _, _, keys = resolved
    jan = keys["shop_customer_id:C700"]
    assert keys["shop_customer_id:G700"] == jan == keys["shop_customer_id:G701"] == keys["visitor_id:v-jan"]
    with wh.connect() as conn:
        row = conn.execute("select shop_customer_id, revenue, full_name from marts.customer_360 "
                           "where customer_key = %s", (jan,)).fetchone()
    # the registered account is the anchor although the older guest record came first
    assert row == ("C700", 5, "Jan Jung")


def test_every_link_is_explained(resolved):
    wh, _, _, _ = resolved
    with wh.connect() as conn:
        unexplained = conn.execute("""
            select count(*) from marts.customer_identifiers
            where link_rule is null or (customer_key is null and blocked_reason is null)""").fetchone()[0]
        # every customer with several identifiers has a used link for each of them
        missing = conn.execute("""
            select count(*) from marts.customer_identifiers as i
            where i.customer_key is not null
              and i.customer_key in (select customer_key from marts.customer_360 where identifier_count > 1)
              and not exists (select 1 from marts.customer_identity_links as l
                              where l.is_used and i.identifier_id in (l.from_identifier_id, l.to_identifier_id))
        """).fetchone()[0]
        prospect = conn.execute("select customer_type, lifecycle_stage from marts.customer_360 "
                                "where email = 'newsletter.fan@mail.example'").fetchone()
    assert unexplained == 0
    assert missing == 0
    assert prospect == ("known_contact", "new_prospect")


def test_keys_stay_stable_when_other_customers_change(resolved):
    wh, settings, landing, first = resolved
    # day 2: a new customer, a new order for Anna, a new guest record under Jan's e-mail
    _write_day(landing, DAY2, [_customer("C999", "Zoe", "Zed", "zoe@zed.example"),
                               _customer("G702", "Jan", "Jung", "jan@jung.example", kind="guest",
                                         created="2026-03-02T10:00:00+00:00")],
               [{"visitor_id": "v-zoe", "event_type": "login", "customer_id": "C999"}], [],
               orders=[("O4", "C100", "7.00")])
    _build(wh, landing, settings, DAY2 + timedelta(days=1), "identity_day_2")
    second = _snapshot(wh)
    assert {i: second[i] for i in first} == first
    assert second["shop_customer_id:G702"] == first["shop_customer_id:C700"]
    assert second["shop_customer_id:C999"] not in set(first.values())


@pytest.fixture(scope="module")
def generated_tiny(embedded_server, tmp_path_factory):
    """The tiny preset with many shared mailboxes, built once: (world, warehouse)."""
    root = tmp_path_factory.mktemp("identity_tiny")
    world, _ = generate(root / "landing", GeneratorConfig.preset("tiny", seed=5, shared_mailbox_rate=0.25,
                                                                 keep_records=True))
    name = f"crm360_test_{uuid.uuid4().hex[:10]}"
    wh = warehouse.ensure_database(embedded_server, name)
    settings = make_settings(root / "home", root / "landing")
    pipeline.run_all(world.end_date + timedelta(days=1), "identity_tiny", wh, landing=root / "landing",
                     settings=settings)
    yield world, wh
    warehouse.drop_database(embedded_server, name)


def test_shop_records_resolve_to_the_people_the_generator_made(generated_tiny):
    world, wh = generated_tiny
    assert world.dirt["shared_mailboxes"] > 0
    with wh.connect() as conn:
        resolved = dict(conn.execute("select identifier_value, customer_key from marts.customer_identifiers "
                                     "where identifier_type = 'shop_customer_id'").fetchall())
        converted = dict(conn.execute("select identifier_value, customer_key from marts.customer_identifiers "
                                      "where identifier_type = 'visitor_id'").fetchall())
    truth: dict[str, set[str]] = defaultdict(set)
    for record, person in world.primary_ids.items():
        truth[person].add(record)
    found: dict[str, set[str]] = defaultdict(set)
    for record, key in resolved.items():
        found[key].add(record)
    person_of = {record: person for person, records in truth.items() for record in records}
    # nobody merged: every resolved customer's records are one person's
    merged = [records for records in found.values() if len({person_of[r] for r in records}) > 1]
    assert not merged, merged[:5]
    # nobody split, except guest-only people whose records share nothing but a shared
    # mailbox: the guard cannot tell them from strangers using the same address
    shared = {c.person for c in world.customers if c.email.strip().lower() in SHARED_MAILBOXES}
    split = {person for person, records in truth.items() if len({resolved[r] for r in records}) > 1}
    assert split <= shared, sorted(split - shared)[:5]
    # and the account holders with guest checkouts are found whole
    assert sum(len(records) > 1 for person, records in truth.items() if person not in shared) > 10
    # visitors who browsed anonymously and later bought belong to the buyer
    key_of_person = {person: resolved[person] for person in truth}
    wrong = [v for v, person in world.converted_visitors.items() if converted.get(v) != key_of_person[person]]
    assert not wrong, wrong[:5]
