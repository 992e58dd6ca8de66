"""Tier history end to end on the tiny preset: the tiers of a past snapshot recomputed
from the generator's own orders, the SCD2 periods, the movement matrix and the current
snapshot against customer_pyramid."""

import math
import uuid
from collections import Counter, defaultdict
from datetime import UTC, timedelta
from decimal import Decimal

import pytest
import yaml
from conftest import REPO, make_settings

from crm360 import pipeline
from crm360.core import warehouse
from crm360.synthetic.generate import GeneratorConfig, generate

DBT_VARS = yaml.safe_load((REPO / "dbt_project" / "dbt_project.yml").read_text())["vars"]
PURCHASE_STATUSES = ("completed", "partially_returned")


@pytest.fixture(scope="module")
def built(embedded_server, tmp_path_factory):
    """One published run on the tiny preset: (warehouse, world with records, as_of)."""
    root = tmp_path_factory.mktemp("tier_history")
    # tiny, over seven months: early buyers have gone inactive by the past snapshot
    world, _ = generate(root / "landing", GeneratorConfig.preset("tiny", seed=7, days=210, keep_records=True,
                                                                  progress=False))
    name = f"crm360_test_{uuid.uuid4().hex[:10]}"
    wh = warehouse.ensure_database(embedded_server, name)
    as_of = world.end_date + timedelta(days=1)
    pipeline.run_all(as_of, "tier_history", wh, landing=root / "landing",
                     settings=make_settings(root / "home", root / "landing"))
    yield wh, world, as_of
    warehouse.drop_database(embedded_server, name)


def _rows(wh, sql, *params):
    with wh.connect() as conn:
        return conn.execute(sql, params).fetchall()


def _revenue_tier(rank: int, buyers: int) -> str:
    cumulative = 0.0
    for t in DBT_VARS["revenue_tiers"]:
        cumulative += t["share"]
        if rank <= math.ceil(buyers * round(cumulative, 6)):
            return t["tier"]
    return DBT_VARS["revenue_tiers"][-1]["tier"]


def test_a_past_snapshot_holds_the_tiers_the_orders_before_it_give(built):
    wh, world, as_of = built
    snapshot = (as_of.replace(day=1) - timedelta(days=1)).replace(day=1)  # the month start before the last
    key_of = dict(_rows(wh, "select identifier_value, customer_key from marts.customer_identifiers "
                            "where identifier_type = 'shop_customer_id'"))
    # the generator's persons are the customers the warehouse resolved
    person_keys = defaultdict(set)
    for shop_id, person in world.primary_ids.items():
        person_keys[person].add(key_of[shop_id])
    assert all(len(keys) == 1 for keys in person_keys.values())

    cents, last_purchase = Counter(), {}
    for order in world.orders:
        day = order.ordered_at.astimezone(UTC).date()
        if day >= snapshot:
            continue
        person = world.primary_ids[order.customer_id]
        cents[person] += order.net_cents
        if order.status in PURCHASE_STATUSES:
            last_purchase[person] = max(day, last_purchase.get(person, day))
    ranked = sorted((c for c in cents.items() if c[1] > 0), key=lambda c: (-c[1], min(person_keys[c[0]])))
    expected = {}
    for person in {p for p, c in cents.items() if c} | set(last_purchase):
        expected[min(person_keys[person])] = ("none", Decimal(cents[person]) / 100, None)
    for rank, (person, amount) in enumerate(ranked, start=1):
        expected[min(person_keys[person])] = (_revenue_tier(rank, len(ranked)), Decimal(amount) / 100, rank)
    window = timedelta(days=DBT_VARS["active_window_days"])
    activity = {min(person_keys[p]): "active" if d > snapshot - window else "inactive"
                for p, d in last_purchase.items()}
    assert len(ranked) > 20 and "inactive" in activity.values()  # the snapshot tests something

    got = {k: (a, r, rev, rank) for k, a, r, rev, rank in _rows(
        wh, """select customer_key, activity_tier, revenue_tier, revenue, revenue_rank
               from intermediate.int_customer_tiers_monthly where snapshot_date = %s""", snapshot)}
    buyers = {k: v for k, v in got.items() if v[0] in ("active", "inactive") or v[2] != 0}
    assert {k: v[0] for k, v in buyers.items() if v[0] in ("active", "inactive")} == activity
    assert {k: (v[1], v[2], v[3]) for k, v in buyers.items()} == expected
    assert {v[:2] for k, v in got.items() if k not in buyers} <= {("prospect", "none"), ("suspect", "none")}

    # the summary counts the same tiers at that date
    summary = dict(((p, t), n) for p, t, n in _rows(
        wh, "select pyramid, tier, customers from marts.customer_pyramid_summary where snapshot_date = %s",
        snapshot))
    assert summary[("revenue", "top")] == sum(1 for v in expected.values() if v[0] == "top")
    assert summary[("activity", "inactive")] == sum(1 for v in activity.values() if v == "inactive")
    assert sum(n for (p, _), n in summary.items() if p == "activity") == len(got)


def test_history_periods_are_contiguous_and_reproduce_every_snapshot(built):
    wh, _, _ = built
    periods = defaultdict(list)
    for key, pyramid, tier, start, end, current, movement in _rows(
            wh, """select customer_key, pyramid, tier, valid_from, valid_to, is_current, movement
                   from marts.customer_tier_history order by customer_key, pyramid, valid_from"""):
        periods[(key, pyramid)].append((tier, start, end, current, movement))
    first_seen = dict(_rows(wh, "select customer_key, min(snapshot_date) from "
                                "intermediate.int_customer_tiers_monthly group by customer_key"))
    assert {k for k, _ in periods} == set(first_seen)
    for (key, _), rows in periods.items():
        assert rows[0][1] == first_seen[key] and rows[0][4] == "entered"
        for before, after in zip(rows, rows[1:], strict=False):
            assert before[2] == after[1] and before[0] != after[0] and not before[3]
            assert after[4] in ("up", "down")
        assert rows[-1][2] is None and rows[-1][3]
        assert all(start < end for _, start, end, _, _ in rows if end is not None)

    # every snapshot's tier is the tier of the one period covering it
    [(uncovered,)] = _rows(wh, """
        select count(*) from intermediate.int_customer_tiers_monthly as m
        cross join (values ('activity'), ('revenue')) as p(pyramid)
        left join marts.customer_tier_history as h
            on h.customer_key = m.customer_key and h.pyramid = p.pyramid
            and m.snapshot_date >= h.valid_from and (h.valid_to is null or m.snapshot_date < h.valid_to)
        where h.tier is distinct from case p.pyramid when 'activity' then m.activity_tier else m.revenue_tier end""")
    assert uncovered == 0


def test_movement_matrix_counts_the_customers_of_consecutive_snapshots(built):
    wh, _, _ = built
    tiers = defaultdict(dict)
    for key, day, activity, revenue in _rows(
            wh, "select customer_key, snapshot_date, activity_tier, revenue_tier "
                "from intermediate.int_customer_tiers_monthly"):
        tiers[day][key] = {"activity": activity, "revenue": revenue}
    days = sorted(tiers)
    assert len(days) >= 4
    expected = Counter()
    for before, day in zip([None, *days], days, strict=False):
        for key, now in tiers[day].items():
            earlier = tiers[before].get(key) if before else None
            for pyramid in ("activity", "revenue"):
                expected[(day, pyramid, earlier and earlier[pyramid], now[pyramid])] += 1
    got = {(d, p, f, t): n for d, p, f, t, n in _rows(
        wh, "select snapshot_date, pyramid, from_tier, to_tier, customers from marts.customer_tier_movements")}
    assert got == dict(expected)
    # customers who did not enter a snapshot were all in the one before
    moved = _rows(wh, """select snapshot_date, pyramid, sum(customers) from marts.customer_tier_movements
                          where movement <> 'entered' group by 1, 2""")
    for day, _, n in moved:
        assert n == len(tiers[days[days.index(day) - 1]])
    ups = _rows(wh, "select distinct movement, sign(tiers_moved) from marts.customer_tier_movements "
                    "where movement in ('up', 'down', 'same')")
    assert set(ups) == {("up", 1), ("down", -1), ("same", 0)}


def test_current_snapshot_is_the_customer_pyramid(built):
    wh, world, as_of = built
    pyramid = _rows(wh, """select customer_key, activity_tier, revenue_tier, revenue_rank, revenue
                           from marts.customer_pyramid order by 1""")
    current = _rows(wh, """select customer_key, activity_tier, revenue_tier, revenue_rank, revenue
                           from intermediate.int_customer_tiers_monthly where is_current order by 1""")
    assert current == pyramid
    history = _rows(wh, """select customer_key,
                                  max(tier) filter (where pyramid = 'activity'),
                                  max(tier) filter (where pyramid = 'revenue')
                           from marts.customer_tier_history where is_current group by 1 order by 1""")
    assert history == [r[:3] for r in pyramid]
    summary = _rows(wh, """select pyramid, tier, customers, snapshot_date from marts.customer_pyramid_summary
                           where is_current order by 1, 2""")
    counts = Counter((p, t) for _, a, r, _, _ in pyramid for p, t in (("activity", a), ("revenue", r)))
    assert [(p, t, n) for p, t, n, _ in summary] == sorted((p, t, n) for (p, t), n in counts.items())
    assert {d for *_, d in summary} == {as_of}

    # rule of thumb 1 recomputed from the generator's revenue per person
    revenue = sorted(world.revenue_by_customer().values(), reverse=True)
    top = sum(revenue[:math.ceil(len(revenue) * 0.2)]) / sum(revenue)
    [(measured, holds)] = _rows(wh, "select measured_value, holds from marts.customer_rules_of_thumb "
                                    "where rule_number = 1")
    assert float(measured) == pytest.approx(top, abs=1e-6)
    assert holds == (0.7 <= top <= 0.9)
    measures = _rows(wh, "select rule_number, measure from marts.customer_rules_of_thumb order by 1, 2")
    assert measures == [
        (1, "top_20_revenue_share"), (2, "existing_customer_revenue_share"), (3, "never_bought_contact_share"),
        (4, "moved_up_share"), (4, "small_reached_top_share"), (5, "up_mover_satisfaction_gap"),
        (6, "middling_satisfaction_lapse_gap"), (7, "department_marketing"), (7, "department_sales_follow_up"),
        (7, "department_service"), (8, "upgrade_two_percent_uplift")]
    # rule 8 is the what-if mart's total; its movers are the configured 2 % of buyers
    [(uplift, moved, buyers)] = _rows(wh, """select uplift_mean_share, customers_moved, buyers
                                             from marts.customer_upgrade_what_if
                                             where is_total and variant = 'nearest_boundary'""")
    [(rule_8,)] = _rows(wh, "select measured_value from marts.customer_rules_of_thumb where rule_number = 8")
    assert rule_8 == uplift and buyers == len([r for r in revenue if r > 0])
    assert abs(moved - 0.02 * buyers) <= 2
