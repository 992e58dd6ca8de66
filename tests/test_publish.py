"""Write-audit-publish: readers only ever see gated marts, and never an error."""

import shutil
import threading
import time
from datetime import timedelta

import psycopg
import pytest
from conftest import MARTS_CHECKSUM

from crm360 import pipeline
from crm360.quality.gates import GateFailed
from crm360.serve import segments
from crm360.transform import publish

pytestmark = pytest.mark.e2e

def _one(wh, query):
    with wh.connect() as conn:
        return conn.execute(query).fetchone()


def test_marts_are_built_out_of_sight_then_published(published):
    wh, *_ = published
    with wh.connect() as conn:
        schemas = {r[0] for r in conn.execute("select nspname from pg_namespace")}
        [(tables,)] = conn.execute("select tables from audit.publications where run_id = 'first'").fetchall()
    assert "marts" in schemas and publish.BUILD not in schemas
    views = {f"segment__{s.name}" for s in segments.load()}  # one view per segment, published with its table
    assert set(tables) == set(pipeline.marts()) | views  # the manifest's marts, all of them


def test_readers_see_no_error_during_build_and_publish(published):
    wh, settings, landing, as_of = published
    errors, latencies, stop = [], [], threading.Event()

    def reader():
        with psycopg.connect(wh.conninfo, autocommit=True) as conn:
            conn.execute("set statement_timeout = '5s'")  # a lock wait past 5 s is an error
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    conn.execute("select count(*), sum(revenue) from marts.customer_360").fetchone()
                    conn.execute("select count(*) from marts.customer_pyramid_summary").fetchone()
                except psycopg.Error as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                latencies.append(time.perf_counter() - started)
                time.sleep(0.005)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for run in ("second", "third"):  # two publications: also drops marts__previous once
            pipeline.run_all(as_of, run, wh, landing=landing, settings=settings)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert errors == []
    assert len(latencies) > 100
    assert max(latencies) < 5


def test_failed_marts_gate_keeps_yesterdays_marts(published, tmp_path):
    wh, settings, landing, as_of = published
    before = _one(wh, MARTS_CHECKSUM)
    # a new day: an order line so large the revenue bound in the marts suite fails,
    # though every raw check and dbt test passes
    bad_landing = tmp_path / "landing"
    shutil.copytree(landing, bad_landing)
    day = bad_landing / "sales" / as_of.isoformat()
    day.mkdir()
    (day / "orders.csv").write_text(
        "order_id,customer_id,ordered_at,status,currency,updated_at\n"
        f"O_HUGE,C0000001,{as_of}T09:00:00+00:00,completed,EUR,\n")
    (day / "order_lines.csv").write_text(
        "order_id,line_number,product_id,quantity,unit_price\nO_HUGE,1,P00001,9999,99999.00\n")

    with pytest.raises(GateFailed, match=r"marts_customer_360.revenue: expect_column_values_to_be_between"):
        pipeline.run_all(as_of + timedelta(days=1), "bad", wh, landing=bad_landing, settings=settings)

    assert _one(wh, MARTS_CHECKSUM) == before, "published marts changed after a failed gate"
    sample = _one(wh, "select sample from audit.gate_results where run_id = 'bad' and not success")[0]
    assert len(sample) == 1 and float(sample[0]["revenue"]) > 10_000_000 and sample[0]["customer_key"]
    # the rejected build is kept for inspection, unpublished
    assert _one(wh, f"select count(*) from {publish.BUILD}.customer_360 where revenue > 1e7")[0] == 1


def test_publish_without_a_build_is_refused(published):
    wh, *_ = published
    publish.reset_build(wh)
    with pytest.raises(publish.PublishError, match="nothing to publish"):
        publish.publish(wh, "nothing")
    assert _one(wh, "select count(*) from marts.customer_360")[0] > 0
