"""Backfills load history day by day, exactly once, whatever is re-run."""

from datetime import timedelta

import pytest
from conftest import make_settings

from crm360 import cli, pipeline
from crm360.core import schema
from crm360.synthetic.generate import GeneratorConfig, generate
from crm360.transform import dbt

pytestmark = pytest.mark.e2e


def _loads_by_batch(wh):
    with wh.connect() as conn:
        return dict(conn.execute(
            "select batch_id, count(*) from audit.load_files group by batch_id").fetchall())


def _raw_counts(wh):
    with wh.connect() as conn:
        return conn.execute("""select (select count(*) from raw.sales_orders), (select count(*) from raw.web_events),
                                      (select count(*) from raw.service_tickets)""").fetchone()


def test_backfill_loads_each_day_once_and_reruns_change_nothing(server, fresh_db, tmp_path):
    wh = fresh_db(server)
    landing = tmp_path / "landing"
    world, manifest = generate(landing, GeneratorConfig.preset("tiny", seed=9))
    settings = make_settings(tmp_path / "home", landing)
    end = world.end_date
    first_day = end - timedelta(days=1)

    summary = pipeline.backfill(first_day, end + timedelta(days=1), wh, landing, settings)

    batches = _loads_by_batch(wh)
    # the first backfill day loads every drop dated before it; each later day adds exactly its own drops
    assert batches == {
        f"backfill_{first_day}.1:sales": _files(landing, "sales/*/*.csv", before=first_day),
        f"backfill_{first_day}.1:service": _files(landing, "service/*.json", before=first_day),
        f"backfill_{first_day}.1:web": _files(landing, "web/*.jsonl", before=first_day),
        **{f"backfill_{d}.1:{s}": _files(landing, pattern, on=d - timedelta(days=1))
           for d in (end, end + timedelta(days=1))
           for s, pattern in (("sales", "sales/*/*.csv"), ("service", "service/*.json"), ("web", "web/*.jsonl"))},
    }
    rows = (manifest["order_rows"], manifest["web_events"], manifest["ticket_rows"])
    assert _raw_counts(wh) == rows
    assert summary.as_of_date == (end + timedelta(days=1)).isoformat()
    assert summary.mart_rows["customer_360"] == manifest["people"]

    again = pipeline.backfill(first_day, end + timedelta(days=1), wh, landing, settings)
    assert _loads_by_batch(wh) == batches
    assert _raw_counts(wh) == rows
    assert again.mart_rows == summary.mart_rows


def _files(landing, pattern, before=None, on=None):
    from crm360.ingest import file_date

    days = [file_date(p.relative_to(landing).as_posix()) for p in landing.glob(pattern)]
    return sum(1 for d in days if (before is not None and d < before) or (on is not None and d == on))


def test_next_day_increment_loads_exactly_that_day_and_reruns_change_nothing(db, tmp_path):
    """The generator's next day (new customers, new orders, returns of earlier orders, ticket
    updates, late events) loads as exactly one more day of drops, and the marts reconcile with
    the longer history."""
    from crm360.synthetic.generate import generate_next_day

    landing = tmp_path / "landing"
    # no shared mailboxes: a guest using one is rightly split from their own records (see
    # test_identity), which would blur the people count this test reconciles
    cfg = GeneratorConfig.preset("tiny", seed=4, progress=False, shared_mailbox_rate=0.0)
    world, manifest = generate(landing, cfg)
    settings = make_settings(tmp_path / "home", landing)
    first = pipeline.run_all(world.end_date + timedelta(days=1), "day_1", db, landing=landing, settings=settings)
    assert _raw_counts(db) == (manifest["order_rows"], manifest["web_events"], manifest["ticket_rows"])

    grown = generate_next_day(landing, cfg)
    new_day = world.end_date + timedelta(days=1)
    second = pipeline.run_all(new_day + timedelta(days=1), "day_2", db, landing=landing, settings=settings)
    assert _raw_counts(db) == (grown["order_rows"], grown["web_events"], grown["ticket_rows"])
    assert _loads_by_batch(db)["day_2.1:sales"] == _files(landing, "sales/*/*.csv", on=new_day)
    assert second.mart_rows["customer_360"] == grown["people"] >= first.mart_rows["customer_360"]
    with db.connect() as conn:
        assert conn.execute("select sum(revenue)::text from marts.customer_360").fetchone()[0] == grown["revenue"]

    pipeline.run_all(new_day + timedelta(days=1), "day_2_again", db, landing=landing, settings=settings)
    assert _raw_counts(db) == (grown["order_rows"], grown["web_events"], grown["ticket_rows"])
    assert "day_2_again.1:sales" not in _loads_by_batch(db)

    # the web sessions, built incrementally over the two days (the new day's late events
    # reopen earlier sessions), are the generator's and those of a build from scratch
    sessions = "select count(*), md5(string_agg(s::text, ',' order by s.session_id)) " \
               "from intermediate.int_web_events_sessionized as s"
    with db.connect() as conn:
        assert conn.execute("select sum(web_sessions) from marts.customer_360").fetchone()[0] == grown["web_sessions"]
        incremental = conn.execute(sessions).fetchone()
    dbt.run_dbt(db, ["run", "--select", "int_web_events_sessionized", "--full-refresh"], pipeline.build_vars(settings),
                settings=settings, extra_env=pipeline.build_env(new_day + timedelta(days=1)))
    with db.connect() as conn:
        assert conn.execute(sessions).fetchone() == incremental


def test_a_day_loads_only_drops_dated_before_it(db, tmp_path):
    landing = tmp_path / "landing"
    world, _ = generate(landing, GeneratorConfig.preset("tiny", seed=9))
    settings = make_settings(tmp_path / "home", landing)
    as_of = world.start_date + timedelta(days=10)
    schema.migrate(db)
    result = pipeline.ingest_source(db, "web", "r1", landing, settings, until=as_of)
    assert result["files_loaded"] == 10
    # a late event sits in the file of a later day than it happened on
    expected = sum(1 for day in world.event_drop_days if day < as_of)
    with db.connect() as conn:
        assert conn.execute("select count(*) from raw.web_events").fetchone()[0] == expected


def test_backfill_rejects_a_reversed_range(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CRM360_HOME", str(tmp_path))  # touch no real state, start no server
    assert cli.main(["backfill", "--from", "2026-11-02", "--to", "2026-11-01"]) == 1
    assert "end 2026-11-01 is before start 2026-11-02" in capsys.readouterr().err
    assert not (tmp_path / "pgdata").exists()
