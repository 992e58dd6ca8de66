"""The product pair counts (int_product_pairs_counted) and the baskets they were counted from are
written in one transaction (dbt_project/macros/baskets.sql), so a build that fails between them
cannot count a day twice. Its own file: the equivalence files are long already, and the suite
runs a file per worker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_equivalence import _config, as_of_after, incremental_equals_full_rebuild, world  # noqa: F401

from crm360 import pipeline
from crm360.synthetic.generate import generate_next_day
from crm360.transform.dbt import DbtError

pytestmark = pytest.mark.e2e


def test_a_build_failing_as_it_records_the_counted_baskets_counts_the_day_once(world):  # noqa: F811
    """The product pair counts and the baskets they were counted from are written in one
    transaction (dbt_project/macros/baskets.sql): a day's build failing while it writes the
    baskets leaves the counts as they were, and the re-run counts the day once. Were the two
    written apart, the re-run would add the day's pairs a second time."""
    wh, settings, landing, _ = world
    as_of = as_of_after(landing)
    pipeline.run_all(as_of, "day1", wh, landing=landing, settings=settings)
    generate_next_day(landing, _config())
    counts = "select count(*), sum(orders_with_both) from intermediate.int_product_pairs_counted"
    with wh.connect() as conn:
        before = conn.execute(counts).fetchone()
        conn.execute("""create function public.refuse_baskets() returns trigger language plpgsql as $$
                        begin raise exception 'injected: the counted baskets cannot be written'; end $$""")
        conn.execute("""create trigger refuse_baskets before insert on intermediate.int_product_pairs_counted__baskets
                        for each statement execute function public.refuse_baskets()""")
        conn.commit()
    with pytest.raises(DbtError, match="int_product_pairs_counted"):
        pipeline.run_all(as_of + timedelta(days=1), "day2", wh, landing=landing, settings=settings)
    with wh.connect() as conn:
        assert conn.execute(counts).fetchone() == before, "the failed build changed the pair counts"
        conn.execute("drop trigger refuse_baskets on intermediate.int_product_pairs_counted__baskets")
        conn.execute("drop function public.refuse_baskets()")
        conn.commit()
    pipeline.run_all(as_of + timedelta(days=1), "day2", wh, landing=landing, settings=settings)
    with wh.connect() as conn:
        assert conn.execute(counts).fetchone()[1] > before[1], "the day brought no purchase to count"
    incremental_equals_full_rebuild(wh, settings, as_of + timedelta(days=1))
