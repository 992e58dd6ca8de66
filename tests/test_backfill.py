"""Backfills load history day by day, exactly once, whatever is re-run."""

from datetime import UTC, timedelta

import pytest
from conftest import make_settings

from crm360 import cli, pipeline
from crm360.generate import GeneratorConfig, generate

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
    # the first backfill day loads every drop dated before it (118 days: 3 sales files a day plus the
    # catalogue once, one ticket export, one event file); each later day adds exactly one day of drops
    assert batches == {
        f"backfill_{first_day}:sales": 118 * 3 + 1, f"backfill_{first_day}:service": 118,
        f"backfill_{first_day}:web": 118,
        **{f"backfill_{d}:{s}": n for d in (end, end + timedelta(days=1))
           for s, n in (("sales", 3), ("service", 1), ("web", 1))},
    }
    assert _raw_counts(wh) == (manifest["orders"], manifest["web_events"], manifest["tickets"])
    assert summary.as_of_date == (end + timedelta(days=1)).isoformat()
    assert summary.mart_rows["customer_360"] == manifest["people"]

    again = pipeline.backfill(first_day, end + timedelta(days=1), wh, landing, settings)
    assert _loads_by_batch(wh) == batches
    assert _raw_counts(wh) == (manifest["orders"], manifest["web_events"], manifest["tickets"])
    assert again.mart_rows == summary.mart_rows


def test_a_day_loads_only_drops_dated_before_it(db, tmp_path):
    landing = tmp_path / "landing"
    world, _ = generate(landing, GeneratorConfig.preset("tiny", seed=9))
    settings = make_settings(tmp_path / "home", landing)
    as_of = world.start_date + timedelta(days=10)
    pipeline.prepare(db)
    result = pipeline.ingest_source(db, "web", "r1", landing, settings, until=as_of)
    assert result["files_loaded"] == 10
    expected = sum(1 for e in world.events
                   if e["occurred_at"] and _drop_day(e["occurred_at"], world) < as_of)
    with db.connect() as conn:
        assert conn.execute("select count(*) from raw.web_events").fetchone()[0] == expected


def _drop_day(moment, world):
    from datetime import datetime

    day = datetime.fromisoformat(moment).astimezone(UTC).date()
    return min(max(day, world.start_date), world.end_date)


def test_backfill_rejects_a_reversed_range(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CRM360_HOME", str(tmp_path))  # touch no real state, start no server
    assert cli.main(["backfill", "--from", "2026-11-02", "--to", "2026-11-01"]) == 1
    assert "end 2026-11-01 is before start 2026-11-02" in capsys.readouterr().err
    assert not (tmp_path / "pgdata").exists()
