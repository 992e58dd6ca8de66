"""Baskets and follow-up calls: product_affinity, customer_next_product and
customer_follow_up_effect after a whole pipeline run on the small preset, checked
against the generator's planted bundles, its order records and its follow-up ground truth."""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from itertools import combinations

import pytest
import yaml
from conftest import REPO, make_settings

from crm360 import pipeline
from crm360.core import warehouse
from crm360.synthetic.generate import GeneratorConfig, generate

pytestmark = pytest.mark.e2e

DBT_VARS = yaml.safe_load((REPO / "dbt_project" / "dbt_project.yml").read_text())["vars"]
PURCHASE = ("completed", "partially_returned")


@pytest.fixture(scope="module")
def run(embedded_server, tmp_path_factory):
    """The small preset generated with its records and published by one pipeline run."""
    root = tmp_path_factory.mktemp("baskets")
    landing = root / "landing"
    world, _ = generate(landing, GeneratorConfig.preset("small", keep_records=True))
    name = f"crm360_test_{uuid.uuid4().hex[:10]}"
    wh = warehouse.ensure_database(embedded_server, name)
    as_of = world.end_date + timedelta(days=1)
    pipeline.run_all(as_of, "baskets", wh, landing=landing, settings=make_settings(root / "home", landing))
    with wh.connect() as conn:
        key_of = dict(conn.execute(
            "select identifier_value, customer_key from marts.customer_identifiers"
            " where identifier_type = 'shop_customer_id' and customer_key is not null").fetchall())
    yield wh, world, as_of, key_of
    warehouse.drop_database(embedded_server, name)


def _query(wh, sql, *params):
    with wh.connect() as conn:
        return conn.execute(sql, params).fetchall()


def _rules(wh) -> dict[tuple[str, str], tuple]:
    rows = _query(wh, """
        select antecedent_product_id, consequent_product_id, orders_with_both, antecedent_orders,
               consequent_orders, purchase_orders, support, confidence, lift
        from marts.product_affinity""")
    return {(r[0], r[1]): r[2:] for r in rows}


def test_planted_bundles_have_high_lift_both_ways(run):
    wh, world, _, _ = run
    rules = _rules(wh)
    assert world.bundles
    by_lift = sorted({tuple(sorted(pair)) for pair in rules}, key=lambda p: -rules[p][-1])
    top = set(by_lift[: 2 * len(world.bundles)])
    for a, b in world.bundles:
        assert (a, b) in rules and (b, a) in rules, f"bundle {a}+{b} missing from product_affinity"
        assert rules[(a, b)][-1] > 2 and rules[(b, a)][-1] > 2, f"bundle {a}+{b}: lift {rules[(a, b)][-1]}"
        assert tuple(sorted((a, b))) in top, f"bundle {a}+{b} not among the top {len(top)} pairs by lift"


def test_support_confidence_lift_match_the_generated_orders(run):
    wh, world, _, _ = run
    baskets = [{p for p, _, _ in o.lines} for o in world.orders if o.status in PURCHASE]
    n = len(baskets)
    single = Counter(p for basket in baskets for p in basket)
    both = Counter(pair for basket in baskets for pair in combinations(sorted(basket), 2))
    min_orders = max(DBT_VARS["affinity_min_orders"], DBT_VARS["affinity_min_support"] * n)
    expected = {}
    for (a, b), k in both.items():
        if k >= min_orders:
            expected[(a, b)] = (k, single[a], single[b])
            expected[(b, a)] = (k, single[b], single[a])

    rules = _rules(wh)
    assert set(rules) == set(expected)
    for pair in sorted(expected)[::7]:  # a sample, spread over the products
        k, n_a, n_b = expected[pair]
        got_k, got_a, got_b, got_n, support, confidence, lift = rules[pair]
        assert (got_k, got_a, got_b, got_n) == (k, n_a, n_b, n), pair
        assert float(support) == pytest.approx(k / n, abs=1e-9), pair
        assert float(confidence) == pytest.approx(k / n_a, abs=1e-7), pair
        assert float(lift) == pytest.approx((k / n_a) / (n_b / n), abs=1e-5), pair


def test_next_products_are_new_to_the_customer_and_follow_the_rules(run):
    wh, world, _, key_of = run
    ordered, bought = defaultdict(set), defaultdict(set)
    for o in world.orders:
        key = key_of.get(o.customer_id)
        if key is None:  # an order of no resolved customer is not attributed
            continue
        if o.status != "cancelled":
            ordered[key].update(p for p, _, _ in o.lines)
        if o.status in PURCHASE:
            bought[key].update(p for p, _, _ in o.lines)
    rules = _rules(wh)
    rows = _query(wh, """
        select customer_key, suggestion_rank, product_id, because_of_product_id, confidence, lift
        from marts.customer_next_product order by customer_key, suggestion_rank""")
    per_customer = defaultdict(list)
    for key, rank, product, because, confidence, lift in rows:
        per_customer[key].append(rank)
        assert product not in ordered[key], f"{key} already ordered {product}"
        assert because in bought[key], f"{key} never bought {because}"
        assert (confidence, lift) == rules[(because, product)][-2:]
        assert lift > 1
    assert len(per_customer) > len(bought) / 2, "most buying customers should get suggestions"
    for key, ranks in per_customer.items():
        assert ranks == list(range(1, len(ranks) + 1)) and len(ranks) <= DBT_VARS["next_product_suggestions"], key


def _expected_follow_up(world, as_of, key_of) -> dict[str, tuple[int, Decimal, Decimal]]:
    """The mart's definition worked out in Python from the generator's records."""
    window, min_window = DBT_VARS["follow_up_window_days"], DBT_VARS["follow_up_min_window_days"]
    start = min(o.ordered_at for o in world.orders).astimezone(UTC).date()
    end = datetime.combine(as_of, time(), UTC)
    purchases = defaultdict(list)
    for o in world.orders:
        if o.status in PURCHASE and o.customer_id in key_of:
            purchases[key_of[o.customer_id]].append((o.ordered_at, Decimal(o.net_cents) / 100))
    calls = [t for t in world.tickets if t["type"] == "follow_up_call" and t["customer_ref"] in key_of]
    called = {key_of[t["customer_ref"]] for t in calls}
    contacted: dict[str, datetime] = {}
    for t in calls:
        if t["outcome"] == "reached":
            key, at = key_of[t["customer_ref"]], datetime.fromisoformat(t["created_at"])
            contacted[key] = min(at, contacted.get(key, at))
    pool = sorted((at, key) for key, at in contacted.items())
    subjects = [("contacted", key, at) for key, at in contacted.items()]
    for key in set(purchases) - called:
        draw = int(hashlib.md5(key.encode()).hexdigest()[:7], 16) % len(pool)
        subjects.append(("not_contacted", key, pool[draw][0]))

    out = {g: [0, Decimal(0), Decimal(0)] for g in ("contacted", "not_contacted")}
    for group, key, at in subjects:
        days = min(window, (at.astimezone(UTC).date() - start).days)
        if days < min_window or at + timedelta(days=days) > end:
            continue
        lo, hi = at - timedelta(days=days), at + timedelta(days=days)
        before = [net for when, net in purchases[key] if lo <= when < at]
        after = [net for when, net in purchases[key] if at <= when < hi]
        if before:
            out[group][0] += 1
            out[group][1] += sum(before)
            out[group][2] += sum(after)
    return {g: tuple(v) for g, v in out.items()}


def test_follow_up_calls_raise_spending_as_the_generator_made_them(run):
    wh, world, as_of, key_of = run
    rows = _query(wh, """
        select customer_group, customers, spend_before, spend_after, change_pct, published_change_pct
        from marts.customer_follow_up_effect""")
    got = {r[0]: r[1:] for r in rows}
    assert set(got) == {"contacted", "not_contacted"}
    assert got["contacted"][4] == 6 and got["not_contacted"][4] == -8

    expected = _expected_follow_up(world, as_of, key_of)
    for group in got:
        assert got[group][:3] == expected[group], group
        assert got[group][0] >= 10, f"too few {group} customers to compare"

    change = {g: float(v[3]) for g, v in got.items()}
    assert change["contacted"] > change["not_contacted"]
    truth = {g: (after - before) / before for g, (before, after, _) in world.follow_up_spend.items()}
    assert (truth["reached"] > truth["not_called"]) == (change["contacted"] > change["not_contacted"])
    assert (truth["reached"] > 0) == (change["contacted"] > 0)
    assert (truth["not_called"] > 0) == (change["not_contacted"] > 0)
