"""The whole pipeline on generated data, against both real PostgreSQL servers,
reconciled with the generator's own totals."""

import math
from datetime import timedelta
from decimal import Decimal

import pytest
import yaml
from conftest import REPO, make_settings

from crm360 import pipeline
from crm360.serve import report
from crm360.synthetic.generate import GeneratorConfig, generate

pytestmark = pytest.mark.e2e

DBT_VARS = yaml.safe_load((REPO / "dbt_project" / "dbt_project.yml").read_text())["vars"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e_landing")
    # no shared mailboxes: the counts below are people, and a guest using a shared
    # mailbox is rightly split from their own records (see test_identity)
    world, manifest = generate(root, GeneratorConfig.preset("tiny", seed=11, shared_mailbox_rate=0.0))
    return root, world, manifest


def _expected_tiers(world, manifest, as_of):
    window = DBT_VARS["active_window_days"]
    last = world.last_purchase_by_customer()
    active = sum(1 for d in last.values() if d > as_of - timedelta(days=window))
    activity = {
        "active": active,
        "inactive": len(last) - active,
        "prospect": manifest["shop_customers"] - len(last) + manifest["prospects"],
        "suspect": manifest["anonymous_visitors"],
    }
    buyers = len(world.revenue_by_customer())
    revenue, upper_prev, cumulative = {}, 0, 0.0
    for i, t in enumerate(DBT_VARS["revenue_tiers"]):
        cumulative += t["share"]
        last_tier = i == len(DBT_VARS["revenue_tiers"]) - 1
        upper = buyers if last_tier else math.ceil(buyers * round(cumulative, 6))
        revenue[t["tier"]] = max(0, min(upper, buyers) - upper_prev)
        upper_prev = max(upper_prev, min(upper, buyers))
    revenue["none"] = manifest["people"] - buyers
    return ({k: v for k, v in activity.items() if v}, {k: v for k, v in revenue.items() if v})


def _query(wh, sql, *params):
    with wh.connect() as conn:
        return conn.execute(sql, params).fetchall()


def test_pipeline_reconciles_with_the_generator(server, fresh_db, generated, tmp_path):
    root, world, manifest = generated
    wh = fresh_db(server)
    settings = make_settings(tmp_path / "home", root)
    as_of = world.end_date + timedelta(days=1)

    summary = pipeline.run_all(as_of, "e2e_run_1", wh, landing=root, settings=settings)

    assert summary.mart_rows["customer_360"] == manifest["people"]
    # the report shows every customer once by lifecycle stage, and the rules of thumb
    assert sum(row["customers"] for row in summary.lifecycle) == manifest["people"]
    assert {row["rule_number"] for row in summary.rules_of_thumb} == set(range(1, 9))
    assert {(row["variant"], row["is_total"]) for row in summary.upgrade_what_if} >= {
        ("nearest_boundary", True), ("segment", True)}
    text = report.render(summary, wh)
    assert "Lifecycle stages:" in text and "About 80 % of revenue" in text
    assert "Moving 2 % of customers up one tier" in text and "Rule 8 what-if" in text
    [(people, shop, revenue, sessions, tickets, complaints)] = _query(
        wh,
        """
        select count(*), count(shop_customer_id), sum(revenue), sum(web_sessions),
               sum(tickets + follow_up_calls), sum(complaints)
        from marts.customer_360""",
    )
    assert people == manifest["people"]
    assert shop == manifest["shop_customers"]
    assert revenue == Decimal(manifest["revenue"])
    assert sessions == manifest["web_sessions"]
    assert tickets == manifest["tickets"]
    assert complaints == manifest["complaints"]

    activity, revenue_tiers = _expected_tiers(world, manifest, as_of)
    got = {
        (p, t): n
        for p, t, n in _query(
            wh, "select pyramid, tier, customers from marts.customer_pyramid_summary where is_current"
        )
    }
    assert {t: n for (p, t), n in got.items() if p == "activity"} == activity
    assert {t: n for (p, t), n in got.items() if p == "revenue"} == revenue_tiers

    # the biggest spender is the top customer, with their web visits linked
    by_customer = world.revenue_by_customer()
    best = max(by_customer, key=lambda c: (by_customer[c], c))
    [(tier, rev, identifiers)] = _query(
        wh,
        "select revenue_tier, revenue, identifiers from marts.customer_360 "
        "where shop_customer_id = %s",
        best,
    )
    assert tier == "top" and rev == Decimal(by_customer[best]) / 100
    visitors = {e["visitor_id"] for e in world.events if e.get("customer_id") == best}
    assert {f"visitor_id:{v}" for v in visitors} <= set(identifiers)

    # every check of both gates ran and passed, and the run is recorded
    gates = _query(
        wh,
        "select stage, bool_and(success), count(*) from audit.gate_results "
        "where run_id = 'e2e_run_1' group by stage order by stage",
    )
    assert [(s, ok) for s, ok, _ in gates] == [("marts", True), ("raw", True)]
    assert (tmp_path / "home" / "reports" / "latest.json").exists()

    # a second run over the same drops changes nothing
    keys_before = _query(
        wh, "select customer_key, revenue, activity_tier from marts.customer_360 order by 1"
    )
    pipeline.run_all(as_of, "e2e_run_2", wh, landing=root, settings=settings)
    assert (
        _query(
            wh, "select customer_key, revenue, activity_tier from marts.customer_360 order by 1"
        )
        == keys_before
    )
    [(raw_events,)] = _query(wh, "select count(*) from raw.web_events")
    [(quarantined,)] = _query(wh, "select count(*) from raw._quarantine where table_name = 'web_events'")
    assert raw_events == manifest["web_events"]
    assert quarantined == sum(1 for m in manifest["malformed"] if m["file"].startswith("web/"))


REASON_BY_KIND = {"broken_json": "invalid JSON", "invalid_utf8": "not valid UTF-8",
                  "negative_quantity": "quantity: quantity must be a positive whole number",
                  "bad_date": "not a valid timestamptz"}


def test_dirty_exports_are_quarantined_line_by_line_and_the_marts_still_reconcile(embedded_server, fresh_db,
                                                                                  tmp_path):
    """Every malformed record the generator wrote is in the quarantine, at its file and line,
    for the reason of its kind; everything else reaches the marts, which still reconcile."""
    root = tmp_path / "landing"
    world, manifest = generate(root, GeneratorConfig.preset("tiny", seed=11, malformed_every=20,
                                                            malformed_rate=0.004, progress=False))
    assert {m["kind"] for m in manifest["malformed"]} == set(REASON_BY_KIND)
    wh = fresh_db(embedded_server)
    as_of = world.end_date + timedelta(days=1)
    summary = pipeline.run_all(as_of, "dirty", wh, landing=root, settings=make_settings(tmp_path / "home", root))
    # the run reports what it quarantined, per source
    by_source = {row["source"]: row["quarantined"] for row in summary.loads}
    assert by_source == {source: sum(1 for m in manifest["malformed"] if m["file"].startswith(source + "/"))
                         for source in ("sales", "service", "web")}

    quarantined = {(f, line): reason for f, line, reason in _query(
        wh, "select source_file, coalesce(line_number, record_number), reason from raw._quarantine")}
    assert set(quarantined) == {(m["file"], m["line"]) for m in manifest["malformed"]}
    for m in manifest["malformed"]:
        assert REASON_BY_KIND[m["kind"]] in quarantined[(m["file"], m["line"])], m
    [(people, revenue, sessions)] = _query(
        wh, "select count(*), sum(revenue), sum(web_sessions) from marts.customer_360")
    assert (people, revenue, sessions) == (manifest["people"], Decimal(manifest["revenue"]), manifest["web_sessions"])
