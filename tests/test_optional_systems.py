"""A company binds the systems it has: sales only, or sales and service (all three is
tests/test_pipeline_e2e.py). The pipeline runs end to end on what is bound: nothing is loaded or
checked for freshness for an absent system, the marts keep their columns (null or zero where
the absent system would have fed them), and the counts match figures computed from the files.

The sales-only company also has no e-mails and no phones (one customer number per customer, as
a till's export has): its raw and marts gates pass through the quality: section of its
sources.yml alone, and fail without it."""

import csv
import json
import shutil
from datetime import timedelta
from decimal import Decimal

import pytest
import yaml
from conftest import REPO, make_settings

from crm360 import pipeline
from crm360.quality.gates import GateFailed
from crm360.synthetic.generate import GeneratorConfig, generate

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("optional_landing")
    world, manifest = generate(root, GeneratorConfig.preset("tiny", seed=11, shared_mailbox_rate=0.0))
    return root, world, manifest


def _landing(generated, target, systems):
    """The generated drops of ``systems`` only, copied to ``target``."""
    root, _, _ = generated
    for system in systems:
        shutil.copytree(root / system, target / system)
    return target


def _sources(path, systems, quality=None):
    """The shipped sources.yml cut down to ``systems``, with a quality: section if given."""
    document = yaml.safe_load((REPO / "sources.yml").read_text())
    document["sources"] = {name: entry for name, entry in document["sources"].items() if name in systems}
    if quality:
        document["quality"] = quality
    path.write_text(yaml.safe_dump(document))
    return path


def _rows(pattern_root, pattern):
    for path in sorted(pattern_root.glob(pattern)):
        with path.open(newline="") as fh:
            yield from csv.DictReader(fh)


def _blank(landing, columns):
    """Empty ``columns`` in every customers file, as an export without them would have them."""
    for path in landing.glob("sales/*/customers.csv"):
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            fields, rows = reader.fieldnames, list(reader)
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fields)
            writer.writeheader()
            writer.writerows({**row, **dict.fromkeys(columns, "")} for row in rows)


def _one(wh, sql):
    with wh.connect() as conn:
        return conn.execute(sql).fetchall()


def _freshness_and_gates(wh, run_id):
    freshness = _one(wh, f"select distinct source_name, status from audit.source_freshness where run_id = '{run_id}'")
    gates = _one(wh, f"select stage, bool_and(success) from audit.gate_results where run_id = '{run_id}' "
                     "group by stage order by stage")
    return sorted(freshness), gates


def test_a_sales_only_company_without_e_mails_runs_by_configuration(external_server, fresh_db, generated, tmp_path,
                                                                    monkeypatch):
    _, world, manifest = generated
    landing = _landing(generated, tmp_path / "landing", ["sales"])
    _blank(landing, ["email", "phone"])
    customers = {row["customer_id"] for row in _rows(landing, "sales/*/customers.csv")}
    assert len(customers) == manifest["shop_customer_ids"]
    wh = fresh_db(external_server)
    settings = make_settings(tmp_path / "home", landing)
    as_of = world.end_date + timedelta(days=1)

    # sales.yml naming sales alone is a whole configuration; the shipped e-mail checks stop the run
    monkeypatch.setenv("CRM360_SOURCES", str(_sources(tmp_path / "sales.yml", ["sales"])))
    with pytest.raises(GateFailed, match=r"raw_sales_customers.email: expect_column_values_to_not_be_null"):
        pipeline.run_all(as_of, "no_email_1", wh, landing=landing, settings=settings)

    # the same export, with what this company expects of it said in its configuration
    quality = {"raw_sales_customers": {"filled": {"email": 0}}, "marts_customer_360": {"filled": {"contact_email": 0}}}
    monkeypatch.setenv("CRM360_SOURCES", str(_sources(tmp_path / "sales.yml", ["sales"], quality)))
    summary = pipeline.run_all(as_of, "no_email_2", wh, landing=landing, settings=settings)

    # no e-mail or phone links two customer numbers: every number is a customer of its own
    assert summary.mart_rows["customer_360"] == len(customers)
    [(people, shop, revenue, sessions, contacts, rated, visitors)] = _one(wh, """
        select count(*), count(shop_customer_id), sum(revenue), sum(web_sessions),
               sum(tickets + follow_up_calls + complaints), count(avg_satisfaction_score),
               count(*) filter (where customer_type <> 'shop_customer')
        from marts.customer_360""")
    assert (people, shop) == (len(customers), len(customers))
    assert revenue == Decimal(manifest["revenue"])
    assert (sessions, contacts, rated, visitors) == (0, 0, 0, 0)  # what service and web would feed
    tiers = {t for (t,) in _one(wh, "select distinct tier from marts.customer_pyramid_summary "
                                    "where is_current and pyramid = 'activity'")}
    assert "suspect" not in tiers  # suspects are web visitors
    # freshness looked at sales alone, and every gate passed
    assert _freshness_and_gates(wh, "no_email_2") == ([("sales", "pass")], [("marts", True), ("raw", True)])
    assert {row["source"] for row in summary.loads} == {"sales"}
    report = json.loads((tmp_path / "home" / "reports" / "latest.json").read_text())
    assert report["run_id"] == "no_email_2"


def test_a_company_with_sales_and_service_runs_without_web(external_server, fresh_db, generated, tmp_path,
                                                           monkeypatch):
    _, world, manifest = generated
    landing = _landing(generated, tmp_path / "landing", ["sales", "service"])
    monkeypatch.setenv("CRM360_SOURCES", str(_sources(tmp_path / "sources.yml", ["sales", "service"])))
    wh = fresh_db(external_server)
    settings = make_settings(tmp_path / "home", landing)
    as_of = world.end_date + timedelta(days=1)

    summary = pipeline.run_all(as_of, "no_web", wh, landing=landing, settings=settings)

    # people: the shop's customers, and whoever wrote to the service desk from an address the shop
    # does not know (with no customer number on the ticket), counted here from the files
    shop_emails = {r["email"].strip().lower() for r in _rows(landing, "sales/*/customers.csv") if r["email"].strip()}
    tickets = [t for path in sorted(landing.glob("service/tickets_*.json"))
               for t in json.loads(path.read_text())["tickets"]]
    enquirers = {t["requester"]["email"].strip().lower() for t in tickets
                 if not t.get("customer_ref") and (t.get("requester") or {}).get("email")
                 and t["requester"]["email"].strip().lower() not in shop_emails}
    assert enquirers, "the tiny preset has service-only contacts"
    assert summary.mart_rows["customer_360"] == manifest["shop_customers"] + len(enquirers)
    [(shop, known, revenue, sessions, contacts, visitors)] = _one(wh, """
        select count(*) filter (where customer_type = 'shop_customer'),
               count(*) filter (where customer_type = 'known_contact'), sum(revenue), sum(web_sessions),
               sum(tickets + follow_up_calls), count(*) filter (where customer_type = 'anonymous_visitor')
        from marts.customer_360""")
    assert (shop, known) == (manifest["shop_customers"], len(enquirers))
    assert revenue == Decimal(manifest["revenue"])
    assert contacts == len({t["id"] for t in tickets}) == manifest["tickets"]
    assert (sessions, visitors) == (0, 0)
    assert _freshness_and_gates(wh, "no_web") == ([("sales", "pass"), ("service", "pass")],
                                                  [("marts", True), ("raw", True)])
