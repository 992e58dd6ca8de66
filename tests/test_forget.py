"""Forgetting resolves to exactly the people an identifier belongs to, and says what it did.

One generated world plus a few hand-made people, built and published once:

- two shop customers sharing a mailbox, ``info@company.com`` and ``INFO@Company.com``, each
  with an order, a ticket and a web login, and a web sign-up from the mailbox;
- a customer whose e-mail has a capital dotted I (``Elif.İnan@Example.com``): Python and
  PostgreSQL lower-case it differently;
- customers the export and report tests forget.

(tests/test_erasure.py follows one generated customer through every layer.)"""

from __future__ import annotations

import csv
import json
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import make_settings

from crm360 import access, pipeline, privacy, segments, warehouse
from crm360.generate import GeneratorConfig, generate
from crm360.settings import Settings
from crm360.sources import CONTRACT

pytestmark = pytest.mark.e2e

CUSTOMER_COLUMNS = next(t for t in CONTRACT["sales"] if t.table == "sales_customers").columns

SHARED = ("CSHARED01", "CSHARED02")
ELIF = "CELIF0001"
ELIF_EMAIL = "Elif.İnan@Example.com"
PAULA = "CPAULA001"


@dataclass
class World:
    wh: warehouse.Warehouse
    settings: Settings
    landing: Path
    as_of: date


def _person(cid: str, first: str, last: str, email: str, phone: str, stamp: str) -> dict:
    return {"customer_id": cid, "account_type": "registered", "first_name": first, "last_name": last,
            "email": email, "phone": phone, "country_code": "DE", "city": "Berlin", "region": "Berlin",
            "marketing_consent": "true", "created_at": stamp, "updated_at": stamp}


def _write_extras(landing: Path, day: date) -> None:
    """The hand-made people, as a further drop of the world's last day."""
    stamp = f"{day.isoformat()}T08:00:00+00:00"
    people = [
        _person(SHARED[0], "Anna", "Sharp", "info@company.com", "+49 30 1000001", stamp),
        _person(SHARED[1], "Bert", "Sharp", "INFO@Company.com", "+49 30 1000002", stamp),
        _person(ELIF, "Elif", "İnan", ELIF_EMAIL, "030 7654321", stamp),
        _person(PAULA, "Paula", "Export", "paula.export@example.com", "+49 30 1000004", stamp),
    ]
    folder = landing / "sales" / f"{day.isoformat()}-extra"
    folder.mkdir(parents=True)
    with (folder / "customers.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CUSTOMER_COLUMNS)
        writer.writeheader()
        writer.writerows({c: p.get(c, "") for c in CUSTOMER_COLUMNS} for p in people)
    orders = [(f"O{p['customer_id']}", p["customer_id"]) for p in people]
    (folder / "orders.csv").write_text(
        "order_id,customer_id,ordered_at,status,currency,channel,refund_amount,updated_at\n"
        + "".join(f"{o},{c},{stamp},completed,EUR,web,,{stamp}\n" for o, c in orders), encoding="utf-8")
    (folder / "order_lines.csv").write_text(
        "order_id,line_number,product_id,quantity,unit_price\n"
        + "".join(f"{o},1,P00001,1,25.00\n" for o, _ in orders), encoding="utf-8")
    tickets = [{"id": f"T{p['customer_id']}", "type": "question", "status": "solved", "created_at": stamp,
                "updated_at": stamp, "solved_at": stamp, "satisfaction": None, "channel": "email",
                "direction": "inbound", "requester": {"email": p["email"], "name": p["first_name"]},
                "customer_ref": p["customer_id"]} for p in people]
    (landing / "service" / f"tickets_{day.isoformat()}-extra.json").write_text(
        json.dumps({"exported_at": stamp, "tickets": tickets}), encoding="utf-8")
    events = [{"event_id": f"e-{p['customer_id']}", "visitor_id": f"v-{p['customer_id'].lower()}",
               "event_type": "login", "page": "/account", "occurred_at": stamp, "customer_id": p["customer_id"]}
              for p in people]
    events.append({"event_id": "e-info-signup", "visitor_id": "v-info-desk", "event_type": "signup",
                   "page": "/newsletter", "occurred_at": stamp, "email": "Info@company.com"})
    (landing / "web" / f"events_{day.isoformat()}-extra.jsonl").write_text(
        "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events), encoding="utf-8")


@pytest.fixture(scope="module")
def world(embedded_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("forget")
    landing = root / "landing"
    generated, _ = generate(landing, GeneratorConfig.preset("tiny", seed=11))
    _write_extras(landing, generated.end_date)
    name = f"crm360_test_{uuid.uuid4().hex[:10]}"
    wh = warehouse.ensure_database(embedded_server, name)
    settings = make_settings(root / "home", landing)
    as_of = generated.end_date + timedelta(days=1)
    pipeline.run_all(as_of, "first", wh, landing=landing, settings=settings)
    yield World(wh, settings, landing, as_of)
    warehouse.drop_database(embedded_server, name)


def _key(conn, shop_id: str) -> str:
    return conn.execute("select customer_key from marts.customer_identifiers where identifier_type = "
                        "'shop_customer_id' and identifier_value = %s", (shop_id,)).fetchone()[0]


def _log_export(wh, destination: str) -> None:
    """An export log row as the marketing role may write it (it names the destination)."""
    with access.as_role(wh, access.MARKETING).connect() as conn:
        conn.execute("""insert into audit.segment_exports (exported_by, segment_name, segment_version, row_count,
                                                           destination, format)
                        values ('someone', 'dormant_prospects', 'v', 1, %s, 'csv')""", (destination,))
        conn.commit()


def _csv(path: Path, keys: list[str], encoding: str = "utf-8", city: str = "Berlin") -> bytes:
    rows = [",".join(segments.MEMBER_COLUMNS)]
    rows += [f"dormant_prospects,{k},A. B.,,,true,{city},,,,,,1.00,,," for k in keys]
    path.write_bytes(("\n".join(rows) + "\n").encode(encoding))
    return path.read_bytes()


def test_an_erasure_rewrites_only_exports_crm360_wrote_in_its_export_folder(world, tmp_path, monkeypatch):
    exports = tmp_path / "exports"
    exports.mkdir()
    monkeypatch.setenv("CRM360_EXPORT_DIR", str(exports))
    with world.wh.connect() as conn:
        paula = _key(conn, PAULA)
        other = conn.execute("select customer_key from marts.customer_360 where customer_key <> %s "
                             "order by customer_key limit 1", (paula,)).fetchone()[0]
    inside = exports / "campaign.csv"
    _csv(inside, [paula, other])
    latin1 = exports / "latin1.csv"  # written by hand in a spreadsheet's Latin-1: not crm360's UTF-8
    latin1_bytes = _csv(latin1, [paula], encoding="latin-1", city="Köln")
    victim = tmp_path / "not_an_export.csv"  # any file the pipeline's OS user may write
    victim_bytes = _csv(victim, [paula, other])
    linked_victim = tmp_path / "linked.csv"
    linked_bytes = _csv(linked_victim, [paula])
    (exports / "link.csv").symlink_to(linked_victim)
    for destination in (inside, latin1, victim, exports / "link.csv", exports / ".." / victim.name):
        _log_export(world.wh, str(destination))
    _log_export(world.wh, "stdout")

    request = privacy.request_erasure(world.wh, "shop_customer_id", PAULA, "dpo", "export test")
    result = privacy.apply_erasures(world.wh, "erase_exports")

    with inside.open(newline="", encoding="utf-8") as f:
        assert [r["customer_key"] for r in csv.DictReader(f)] == [other]
    assert victim.read_bytes() == victim_bytes  # outside the folder: never rewritten
    assert linked_victim.read_bytes() == linked_bytes and (exports / "link.csv").is_symlink()
    assert latin1.read_bytes() == latin1_bytes
    # the unreadable export is named, with why, and did not stop the erasure
    problems = result["export_problems"]
    assert any(str(latin1) in p and "not UTF-8" in p for p in problems), problems
    with world.wh.connect() as conn:
        status, detail = conn.execute("select status, detail from audit.erasure_requests where request_id = %s",
                                      (request,)).fetchone()
        assert conn.execute("select count(*) from marts.customer_360 where customer_key = %s",
                            (paula,)).fetchone()[0] == 0
    assert status == "applied"
    assert str(latin1) in detail and "by hand" in detail
