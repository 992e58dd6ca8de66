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

from crm360 import pipeline, privacy
from crm360.cli import main
from crm360.core import access, warehouse
from crm360.core.settings import Settings
from crm360.ingest.sources import CONTRACT
from crm360.quality.gates import GateFailed
from crm360.serve import segments
from crm360.synthetic.generate import GeneratorConfig, generate

pytestmark = pytest.mark.e2e

CUSTOMER_COLUMNS = next(t for t in CONTRACT["sales"] if t.table == "sales_customers").columns

SHARED = ("CSHARED01", "CSHARED02")
ELIF = "CELIF0001"
ELIF_EMAIL = "Elif.İnan@Example.com"
PAULA = "CPAULA001"
QUOTED = "CQUOTE001"


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
        _person(QUOTED, "Xaver", "Quote", "xaver.quote@example.com", "+49 30 1000005", stamp),
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


def _traces(conn, shop_id: str) -> dict[str, int]:
    """Rows anywhere that carry one of the hand-made shop customers (by id, order, ticket or login)."""
    queries = {
        "raw.sales_customers": "select count(*) from raw.sales_customers where customer_id = %(id)s",
        "raw.sales_orders": "select count(*) from raw.sales_orders where customer_id = %(id)s",
        "raw.sales_order_lines": "select count(*) from raw.sales_order_lines where order_id = 'O' || %(id)s",
        "raw.service_tickets": "select count(*) from raw.service_tickets where record ->> 'customer_ref' = %(id)s",
        "raw.web_events": "select count(*) from raw.web_events where record ->> 'customer_id' = %(id)s",
        "staging.stg_sales__orders": "select count(*) from staging.stg_sales__orders where customer_id = %(id)s",
        "staging.stg_web__events": "select count(*) from staging.stg_web__events where customer_id = %(id)s",
        "marts.customer_360": "select count(*) from marts.customer_360 where %(id)s = any(shop_customer_ids)",
    }
    return {table: conn.execute(query, {"id": shop_id}).fetchone()[0] for table, query in queries.items()}


def _all_rows(conn) -> int:
    """Every row of every table an erasure deletes from (marts__previous, which it drops, aside)."""
    tables = conn.execute("""select table_schema, table_name from information_schema.tables
                             where table_schema in ('raw', 'staging', 'intermediate', 'predictions', 'marts')
                               and table_type = 'BASE TABLE'""").fetchall()
    return sum(conn.execute(f'select count(*) from "{s}"."{t}"').fetchone()[0] for s, t in tables)


def _request(conn, request_id: int) -> tuple:
    return conn.execute("select status, customers_found, rows_deleted, detail from audit.erasure_requests "
                        "where request_id = %s", (request_id,)).fetchone()


def test_forget_refuses_a_shared_mailbox_and_says_what_to_give_instead(world, monkeypatch, capsys):
    monkeypatch.setenv("CRM360_WAREHOUSE_URL", world.wh.conninfo)
    with world.wh.connect() as conn:
        before = conn.execute("select count(*) from audit.erasure_requests").fetchone()[0]
        guard = conn.execute("select blocked_reason from marts.customer_identifiers "
                             "where identifier_value = 'info@company.com'").fetchone()[0]
    assert guard == "shared mailbox"
    with pytest.raises(privacy.ErasureError, match="shared mailbox"):
        privacy.request_erasure(world.wh, "email", "info@company.com", "dpo")
    # the graph says so; and for an address it has not seen, the configured prefixes do
    for address in ("INFO@Company.com", "office@unknown-firm.example"):
        assert main(["forget", "--email", address]) == 1
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        assert "shared mailbox" in err and "--customer-key" in err and "--shop-customer-id" in err, err
    with world.wh.connect() as conn:
        assert conn.execute("select count(*) from audit.erasure_requests").fetchone()[0] == before


def test_an_erasure_deletes_only_the_people_it_resolved_to_and_reports_it_truthfully(world):
    # a request for the shared mailbox recorded anyway (by an older crm360, or before the address was
    # seen to be shared): applying it must delete nobody
    with world.wh.connect() as conn:
        forced = conn.execute("""insert into audit.erasure_requests (requested_by, identifier_type, identifier_hash)
                                 values ('dpo', 'email', encode(sha256('info@company.com'), 'hex'))
                                 returning request_id""").fetchone()[0]
        conn.commit()
        shared_before = {s: _traces(conn, s) for s in SHARED}
        rows_before = _all_rows(conn)
    assert all(n > 0 for traces in shared_before.values() for n in traces.values()), shared_before
    privacy.apply_erasures(world.wh, "erase_shared")
    with world.wh.connect() as conn:
        status, found, deleted, detail = _request(conn, forced)
        assert (status, found, deleted) == ("refused", 0, 0)
        assert "shared mailbox" in detail
        assert {s: _traces(conn, s) for s in SHARED} == shared_before
        assert _all_rows(conn) == rows_before
        assert conn.execute("select count(*) from audit.erased_identifiers "
                            "where identifier_hash = encode(sha256('info@company.com'), 'hex')").fetchone()[0] == 0

    # forgetting one of the two by their own id takes that one only, and counts what it deleted
    request = privacy.request_erasure(world.wh, "shop_customer_id", SHARED[0], "dpo")
    privacy.apply_erasures(world.wh, "erase_one_of_two")
    with world.wh.connect() as conn:
        status, found, deleted, detail = _request(conn, request)
        assert (status, found, detail) == ("applied", 1, None)
        assert _traces(conn, SHARED[0]) == dict.fromkeys(shared_before[SHARED[0]], 0)
        assert _traces(conn, SHARED[1]) == shared_before[SHARED[1]]
        assert deleted == rows_before - _all_rows(conn) > 0
        # the mailbox itself was nobody's to erase: it stays, and so does its web sign-up
        assert conn.execute("select count(*) from raw.web_events where record ->> 'email' = 'Info@company.com'"
                            ).fetchone()[0] == 1
        assert conn.execute("select count(*) from audit.erased_identifiers "
                            "where identifier_hash = encode(sha256('info@company.com'), 'hex')").fetchone()[0] == 0


def test_a_non_ascii_email_is_matched_as_the_warehouse_normalises_it(world):
    """PostgreSQL lower-cases the capital dotted I to i; Python to i plus a combining dot."""
    typed = f"  {ELIF_EMAIL.upper()} "
    request = privacy.request_erasure(world.wh, "email", typed, "dpo")
    with world.wh.connect() as conn:
        key = _key(conn, ELIF)
        stored = conn.execute("""select encode(sha256(convert_to(identifier_value, 'UTF8')), 'hex')
                                 from marts.customer_identifiers where identifier_type = 'email'
                                   and customer_key = %s""", (key,)).fetchall()
        digest = conn.execute("select identifier_hash from audit.erasure_requests where request_id = %s",
                              (request,)).fetchone()[0]
    assert (digest,) in stored
    privacy.apply_erasures(world.wh, "erase_elif")
    with world.wh.connect() as conn:
        status, found, deleted, _ = _request(conn, request)
        assert (status, found) == ("applied", 1) and deleted > 0
        assert _traces(conn, ELIF) == dict.fromkeys(_traces(conn, ELIF), 0)
        kept = json.dumps(conn.execute("select json_agg(r) from audit.erasure_requests r").fetchone()[0],
                          ensure_ascii=False)
        assert "nan@" not in kept.lower()


def _quoting(conn, reports: Path, value: str) -> dict[str, int]:
    """Where the run records and reports still quote ``value``."""
    found = {
        "audit.gate_results": conn.execute("select count(*) from audit.gate_results where strpos(sample::text, %s) > 0 "
                                           "or strpos(observed_value, %s) > 0", (value, value)).fetchone()[0],
        "audit.run_health": conn.execute("select count(*) from audit.run_health where strpos(detail, %s) > 0",
                                         (value,)).fetchone()[0],
        "audit.pipeline_runs": conn.execute("select count(*) from audit.pipeline_runs "
                                            "where strpos(summary::text, %s) > 0", (value,)).fetchone()[0],
    }
    for page in sorted(reports.glob("*.*")):
        found[page.name] = int(value.lower() in page.read_text(encoding="utf-8").lower())
    return found


def test_a_forgotten_person_is_cleared_from_gate_samples_run_records_and_reports(world):
    # a drop sends the person again, with a timestamp that has no offset, beside another customer's
    # record with the same fault: the raw gate stops the batch, and its samples, the run's failure
    # message and its health pages quote both
    folder = world.landing / "sales" / f"{world.as_of - timedelta(days=1)}-resent"
    folder.mkdir()
    with (folder / "customers.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CUSTOMER_COLUMNS)
        writer.writeheader()
        for cid, first in ((QUOTED, "Xaver"), ("CKEEP0001", "Karla")):
            writer.writerow({c: v for c, v in _person(cid, first, "Resent", f"{first.lower()}@example.com", "",
                                                       "2026-10-30 08:00:00").items() if c in CUSTOMER_COLUMNS})
    try:
        with pytest.raises(GateFailed, match=QUOTED):
            pipeline.run_all(world.as_of, "resent", world.wh, landing=world.landing, settings=world.settings)
    finally:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
    reports = world.settings.reports_dir
    with world.wh.connect() as conn:
        before = _quoting(conn, reports, QUOTED)
        assert before["audit.gate_results"] and before["audit.run_health"] and before["audit.pipeline_runs"]
        assert before["run_resent.html"] and before["latest.html"], before
        assert _quoting(conn, reports, "CKEEP0001")["audit.gate_results"]

    request = privacy.request_erasure(world.wh, "shop_customer_id", QUOTED, "dpo")
    privacy.apply_erasures(world.wh, "erase_quoted", world.settings)

    with world.wh.connect() as conn:
        assert _quoting(conn, reports, QUOTED) == dict.fromkeys(before, 0)
        # what the records said about anybody else is kept, the failure still readable
        others = _quoting(conn, reports, "CKEEP0001")
        assert others["audit.gate_results"] and others["audit.pipeline_runs"] and others["run_resent.html"], others
        message = conn.execute("select summary ->> 'message' from audit.pipeline_runs where run_id = 'resent'"
                               ).fetchone()[0]
        assert "raw_sales_customers.created_at: expect_column_values_to_match_regex" in message
        assert "[erased]" in message
        status, _, _, _ = _request(conn, request)
        cleared = conn.execute("select outcome -> 'cleared' from audit.erasure_requests where request_id = %s",
                               (request,)).fetchone()[0]
    assert status == "applied"
    assert cleared["audit.gate_results"] >= 1 and cleared["audit.run_health"] >= 1 and cleared["reports"] >= 2
    json.loads((reports / "latest.json").read_text(encoding="utf-8"))  # a report is still what it was: JSON


def test_an_erasure_that_finds_nobody_says_so_in_the_run_and_its_exit_code(world, monkeypatch, capsys):
    monkeypatch.setenv("CRM360_WAREHOUSE_URL", world.wh.conninfo)
    monkeypatch.setenv("CRM360_HOME", str(world.settings.home))
    monkeypatch.setenv("CRM360_LANDING_DIR", str(world.landing))
    assert main(["forget", "--email", "nobody.at.all@example.com", "--reason", "ticket 9"]) == 0
    err = capsys.readouterr().err
    assert "no customer in the published marts has this email" in err, err
    with world.wh.connect() as conn:
        request = conn.execute("select max(request_id) from audit.erasure_requests").fetchone()[0]

    assert main(["run", "--as-of", world.as_of.isoformat(), "--run-id", "after_nobody"]) == 3
    out, err = capsys.readouterr()
    assert f"deletion request {request} (email) found nobody" in err, err
    assert "not_found" in out
    with world.wh.connect() as conn:
        status, found, deleted, detail = _request(conn, request)
        assert (status, found, deleted) == ("not_found", 0, 0)
        assert "nothing was deleted" in detail
        health = conn.execute("select metric, detail from audit.run_health where run_id = 'after_nobody' "
                              "and section = 'erasure' and item = %s", (f"request {request}",)).fetchone()
        assert health == ("not_found", detail)
    page = (world.settings.reports_dir / "run_after_nobody.html").read_text(encoding="utf-8")
    assert f"deletion request {request} (email) found nobody" in page
