"""A batch is one attempt (crm360.ingest.ledger): a failed attempt is taken back out exactly, what it
replaced comes back, an attempt a dead run left behind is cleaned up by the next one, builds
read only gated attempts, and a run's history is appended, never overwritten."""

from __future__ import annotations

import shutil
from datetime import timedelta

import pytest
from conftest import make_settings

from crm360 import ingest, pipeline
from crm360.ingest import csvfile, jsonfile, ledger, loader
from crm360.quality import gates
from crm360.synthetic.generate import GeneratorConfig, generate

RAW = ("sales_products", "sales_customers", "sales_orders", "sales_order_lines", "service_tickets", "web_events",
       "_quarantine")


def raw_state(wh) -> dict:
    """Every raw row (meta columns but the batch and load time included) and the ledger, as sets."""
    with wh.connect() as conn:
        out = {}
        for table in RAW:
            out[table] = sorted(conn.execute(
                f"select md5((to_jsonb(t) - '_batch_id' - '_loaded_at')::text) from raw.{table} as t"  # noqa: S608
            ).fetchall())
        out["ledger"] = sorted(conn.execute("select source, source_file, sha256, row_count from audit.load_files"
                                            ).fetchall())
    return out


def marts(wh) -> tuple:
    with wh.connect() as conn:
        return conn.execute("select count(*), sum(revenue)::text, md5(string_agg(customer_key || revenue, ',' "
                            "order by customer_key)) from marts.customer_360").fetchone()


@pytest.fixture
def world(db, tmp_path):
    landing = tmp_path / "landing"
    world, manifest = generate(landing, GeneratorConfig.preset("tiny", seed=21, malformed_rate=0.0))
    settings = make_settings(tmp_path / "home", landing)
    return db, settings, landing, world.end_date + timedelta(days=1)


def test_a_failed_rerun_erases_nothing_the_first_run_loaded_and_appends_its_history(world):
    """The hostile tester's case: `crm360 run --as-of D` succeeds; the same run again with a bad
    orders.csv fails its raw gate. Before, that unloaded batch cli_D:* (the first run's files with
    it: raw customers 352 -> 348) and overwrote the run's success with failed."""
    wh, settings, landing, as_of = world
    run_id = f"cli_{as_of}"
    pipeline.run_all(as_of, run_id, wh, landing=landing, settings=settings)
    first_raw, first_marts = raw_state(wh), marts(wh)

    orders = sorted(landing.glob("sales/*/orders.csv"))[-1]
    good = orders.read_bytes()
    lines = good.decode().splitlines()
    lines[1] = lines[1].replace(",completed,", ",teleported,").replace(",cancelled,", ",teleported,")
    orders.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(gates.GateFailed, match="raw gate failed"):
        pipeline.run_all(as_of, run_id, wh, landing=landing, settings=settings)
    # the file the failed attempt replaced is back as it was, the other files were never touched
    assert raw_state(wh) == first_raw
    assert marts(wh) == first_marts
    with wh.connect() as conn:
        history = conn.execute("select status from audit.pipeline_run_history where run_id = %s order by entry_id",
                               (run_id,)).fetchall()
        latest = conn.execute("select status from audit.pipeline_runs where run_id = %s", (run_id,)).fetchall()
        attempts = conn.execute("select batch_id, status, replaced_files, restores from audit.load_attempts "
                                "where run_id = %s order by started_at, batch_id", (run_id,)).fetchall()
    assert history == [("success",), ("failed",)] and latest == [("failed",)]
    assert [(b, s) for b, s, _, _ in attempts[:3]] == [(f"{run_id}.1:sales", "gated"),
                                                       (f"{run_id}.1:service", "gated"),
                                                       (f"{run_id}.1:web", "gated")]
    second = {b: (s, r, restores) for b, s, r, restores in attempts[3:]}
    assert second[f"{run_id}.2:sales"] == ("unloaded", 1, None)
    assert second[f"{run_id}.2.restore:sales"] == ("gated", 1, f"{run_id}.2:sales")

    orders.write_bytes(good)  # the source fixes its file: nothing to load, the same marts
    summary = pipeline.run_all(as_of, run_id, wh, landing=landing, settings=settings)
    assert raw_state(wh) == first_raw and marts(wh) == first_marts
    assert summary.mart_rows["customer_360"] == first_marts[0]


def test_any_error_in_a_load_takes_the_attempt_back_out_and_names_the_file(world, monkeypatch):
    """Not only IngestError: an error the loader did not foresee (here a reader failing on the third
    file) unloads the files the attempt committed before it, restores what it replaced, and ends in
    one line naming the file."""
    wh, settings, landing, as_of = world
    pipeline.run_all(as_of, "day1", wh, landing=landing, settings=settings)
    before = raw_state(wh)
    for path in sorted(landing.glob("sales/*/*.csv"))[-4:]:  # four changed files: replacements
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    seen = []
    real = csvfile.copy_csv

    def flaky(conn, job, *args):
        seen.append(job.rel)
        if len(seen) == 3:
            raise UnicodeError("a codec the reader did not expect")
        return real(conn, job, *args)

    monkeypatch.setattr(csvfile, "copy_csv", flaky)
    monkeypatch.setenv("CRM360_LOAD_WORKERS", "1")
    with pytest.raises(ingest.IngestError) as caught:
        ingest.load_source(wh, landing, "sales", run_id="day2")
    message = str(caught.value)
    assert message.startswith(f"{seen[2]}: UnicodeError: a codec the reader did not expect")
    assert "\n" not in message
    assert raw_state(wh) == before  # the two files committed before were taken out, their old versions put back


def test_an_attempt_a_dead_run_left_behind_is_unloaded_by_the_next(world, monkeypatch):
    """A load that committed a file and then died (no unload ran: here the process 'dies' on the second
    file) leaves its attempt 'loading'. No build reads it (the source's horizon stops below it), and the
    next attempt for the source unloads it, putting back what it replaced, before loading."""
    wh, settings, landing, as_of = world
    pipeline.run_all(as_of, "day1", wh, landing=landing, settings=settings)
    before = raw_state(wh)
    web = sorted(landing.glob("web/*.jsonl"))[-2:]
    for path in web:
        path.write_bytes(path.read_bytes() + b"\n")  # changed bytes: replacements

    class Killed(BaseException):
        pass

    real, seen = jsonfile.copy_json, []

    def dies_on_the_second(conn, job, target):
        seen.append(job.rel)
        if len(seen) == 2:
            raise Killed()
        return real(conn, job, target)

    with monkeypatch.context() as patch:
        patch.setattr(jsonfile, "copy_json", dies_on_the_second)
        patch.setattr(loader, "_abandon", lambda *args: None)  # a killed process cleans nothing up
        patch.setenv("CRM360_LOAD_WORKERS", "1")
        with pytest.raises(Killed):
            ingest.load_source(wh, landing, "web", run_id="dead")
    with wh.connect() as conn:
        dead, loaded_at = conn.execute("select status, loaded_at from audit.load_attempts "
                                       "where batch_id = 'dead.1:web'").fetchone()
        assert conn.execute("select %s::timestamptz = %s",
                            (ledger.horizons(wh)["web"], loaded_at)).fetchone() == (True,)
    assert dead == "loading" and raw_state(wh) != before  # one file of it is in raw

    result = ingest.load_source(wh, landing, "web", run_id="day2")
    assert sorted(result.files_loaded) == [p.relative_to(landing).as_posix() for p in web]
    with wh.connect() as conn:
        assert conn.execute("select status from audit.load_attempts where batch_id = 'dead.1:web'"
                            ).fetchone() == ("unloaded",)
    assert result.replaced == 2  # the dead attempt's replacement was undone: both files replace day1's again


def test_builds_read_only_gated_attempts(world, tmp_path):
    """Rows of an attempt still waiting for its gate reach no model, whatever their load time; once
    gated, the next build picks them up (the horizon kept the watermark below them)."""
    wh, settings, landing, as_of = world
    day1 = landing.parent / "day1"
    shutil.copytree(landing, day1)
    last = max(p.name for p in (landing / "sales").iterdir())
    for folder in ("sales",):
        shutil.rmtree(day1 / folder / last)
    for pattern in ("service/*" + last + "*", "web/*" + last + "*"):
        for path in day1.glob(pattern):
            path.unlink()
    pipeline.run_all(as_of, "day1", wh, landing=day1, settings=settings)
    with wh.connect() as conn:
        first = conn.execute("select count(*) from staging.stg_web__events").fetchone()[0]
    loaded = ingest.load_source(wh, landing, "web", run_id="waiting")  # loaded, not gated
    assert loaded.rows["events"] > 0
    pipeline.transform(wh, as_of, settings)  # another source's build runs meanwhile
    with wh.connect() as conn:
        assert conn.execute("select count(*) from staging.stg_web__events").fetchone()[0] == first
    pipeline.gate(wh, "raw", "waiting", [loaded.batch_id], settings, as_of)
    pipeline.transform(wh, as_of, settings)
    with wh.connect() as conn:
        assert conn.execute("select count(*) from staging.stg_web__events").fetchone()[0] > first
