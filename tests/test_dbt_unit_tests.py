"""The dbt unit tests (tier, lifecycle, RFM, staging, baskets ... logic on fixed rows).

A pipeline run leaves them out: they test the models, not the day's data. Here they
run against an empty build of every model, which the incremental models' unit
tests need (their fixtures take the built table's columns)."""

from conftest import make_settings

from crm360.core import schema
from crm360.transform import dbt


def test_dbt_unit_tests_pass(db, tmp_path):
    settings = make_settings(tmp_path / "home", tmp_path / "landing")
    schema.migrate(db)
    dbt.run_dbt(db, ["run", "--empty"], {"as_of_date": "2026-07-01"}, settings=settings)
    result = dbt.run_dbt(db, ["test", "--select", "test_type:unit"], settings=settings, check=False)
    tests = [r for r in result.results if r["unique_id"].startswith("unit_test.")]
    failed = [(r["unique_id"], r["status"], r["message"]) for r in tests if r["status"] != "pass"]
    assert not failed, failed
    names = {r["unique_id"].split(".")[-1] for r in tests}
    # the logic the issue names is covered
    assert {"int_customer_lifecycle_stages", "int_customers_tiered_pyramids",
            "int_customer_rfm_scores_and_segments"} <= names
    # the eight pyramid rules, rule 8's what-if holding and not, each department's effect
    assert {"customer_rules_of_thumb_all_eight_rules", "customer_rules_of_thumb_without_data_and_small_uplift",
            "customer_upgrade_what_if_raises_revenue_by_about_half",
            "customer_upgrade_what_if_flat_pyramid_gains_little", "customer_contact_effect_per_department",
            "customer_contact_effect_follow_up_groups_and_windows",
            "customer_follow_up_effect_is_the_follow_up_department"} <= names
    # baskets: the pairs counted once per purchase, then the rules read off the counts
    assert {"int_product_pairs_counted_counts_each_purchase_once", "product_affinity_support_confidence_lift",
            "customer_next_product_ranks_rules_of_recent_products"} <= names
    assert len(tests) >= 8
