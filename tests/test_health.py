"""Source freshness, the run-health view and failure notifications."""

import json
import shutil
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from crm360 import pipeline
from crm360.pipeline import notify
from crm360.quality import freshness
from crm360.quality.gates import GateFailed
from crm360.serve import health_page

pytestmark = pytest.mark.e2e


def test_freshness_passes_after_a_load_and_is_recorded(published):
    wh, settings, *_ = published
    results = freshness.check(wh, "fresh", settings=settings)
    assert {(r.source_name, r.table_name) for r in results} >= {("web", "web_events"), ("sales", "sales_orders")}
    assert {r.status for r in results} == {"pass"}
    with wh.connect() as conn:
        assert conn.execute("select count(*) from audit.source_freshness where run_id = 'fresh'").fetchone()[0] == len(
            results)


def test_stale_source_warns_or_fails_as_configured(published):
    wh, settings, *_ = published
    with wh.connect() as conn:
        conn.execute("update raw.web_events set _loaded_at = _loaded_at - interval '10 days'")
        conn.commit()
    try:
        results = freshness.check(wh, "stale_warn", action="warn", settings=settings)
        status = {(r.source_name, r.table_name): r.status for r in results}
        assert status[("web", "web_events")] == "error"  # error_after is 3 days for web
        assert status[("sales", "sales_orders")] == "pass"
        with pytest.raises(freshness.StaleSources, match=r"web.web_events \(last load"):
            freshness.check(wh, "stale_fail", action="fail", settings=settings)
    finally:
        with wh.connect() as conn:
            conn.execute("update raw.web_events set _loaded_at = _loaded_at + interval '10 days'")
            conn.commit()


def test_successful_run_has_a_health_view(published):
    wh, settings, *_ = published
    with wh.connect() as conn:
        sections = {r[0] for r in conn.execute(
            "select distinct section from audit.run_health where run_id = 'first'")}
        status = conn.execute("select distinct status from audit.run_health where run_id = 'first'").fetchall()
        marts_rows = dict(conn.execute(
            "select item, value from audit.run_health where run_id = 'first' and section = 'rows:marts'").fetchall())
    assert {"run", "rows:raw", "rows:staging", "rows:intermediate", "rows:marts", "gate:raw", "gate:marts",
            "freshness", "loads"} <= sections
    assert status == [("success",)]
    assert marts_rows["customer_360"] > 0
    page = (settings.reports_dir / "run_first.html").read_text()
    assert "PASSED: marts published" in page and "customer_pyramid_summary" in page


def test_failed_run_health_names_the_failed_check(published, tmp_path):
    wh, settings, landing, as_of = published
    bad = tmp_path / "landing"
    shutil.copytree(landing, bad)
    day = bad / "sales" / as_of.isoformat()
    day.mkdir()
    (day / "orders.csv").write_text("order_id,customer_id,ordered_at,status,currency,updated_at\n"
                                    f"O_X,C0000001,{as_of}T08:00:00+00:00,lost_in_space,EUR,\n")
    with pytest.raises(GateFailed) as failure:
        pipeline.run_all(as_of + timedelta(days=1), "broken", wh, landing=bad, settings=settings)
    note = failure.value.__notes__[0]
    assert note.startswith("run health report: ")
    page = open(note.split(": ", 1)[1]).read()
    assert "FAILED: marts not published" in page
    assert "raw_sales_orders" in page and "lost_in_space" in page
    with wh.connect() as conn:
        assert conn.execute("select status from audit.pipeline_runs where run_id = 'broken'").fetchone() == ("failed",)


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_failure_callback_records_and_posts_to_the_webhook(published, monkeypatch):
    wh, settings, _, as_of = published
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.handle_request, daemon=True)  # exactly one request
    thread.start()
    monkeypatch.setenv(notify.WEBHOOK_ENV, f"http://127.0.0.1:{server.server_port}/alerts")
    monkeypatch.setenv("CRM360_HOME", str(settings.home))
    payload = notify.on_failure("crm360_pipeline", "gate_marts", "manual__2026-11-01T00:00:00+00:00",
                                RuntimeError("marts gate failed: 1 check(s) did not pass"), as_of, wh=wh)
    thread.join(timeout=10)
    server.server_close()
    assert _Hook.received and _Hook.received[0]["task_id"] == "gate_marts"
    assert "marts gate failed" in _Hook.received[0]["text"]
    assert payload["report"] and payload["report"].endswith(".html")
    with wh.connect() as conn:
        row = conn.execute("select status, summary->>'message' from audit.pipeline_runs "
                           "where run_id = %s", (pipeline.safe_run_id("manual__2026-11-01T00:00:00+00:00"),)).fetchone()
    assert row[0] == "failed" and "gate_marts" in row[1]


def test_failure_callback_survives_an_unreachable_warehouse_and_webhook(monkeypatch):
    monkeypatch.setenv(notify.WEBHOOK_ENV, "http://127.0.0.1:9/nothing-listens-here")
    monkeypatch.setenv("CRM360_WAREHOUSE_URL", "postgresql://nobody@127.0.0.1:9/none")
    payload = notify.on_failure("d", "t", "r", ValueError("boom"))
    assert payload["text"] == "crm360: d.t failed in run r: boom" and payload["report"] is None


def test_health_html_escapes_source_text():
    page = health_page.render_html("r1", None, "failed", "<script>x</script>", {
        "failures": [{"suite": "<b>", "sample": "<img src=x>"}], "gates": [], "freshness": [], "loads": [],
        "rejected": [], "layers": []})
    assert "<script>" not in page and "<img" not in page and "&lt;script&gt;" in page


def test_stale_source_is_reported_with_dbts_thresholds(published, monkeypatch):
    """Freshness is computed in the warehouse, without starting dbt, against the thresholds dbt
    resolved from the sources YAML (web: warn 1 day, error 3; sales and service: warn 2, error 7)."""
    from crm360.transform import dbt

    wh, settings, *_ = published

    def no_dbt(*args, **kwargs):
        raise AssertionError("source freshness must not start dbt")

    monkeypatch.setattr(dbt, "run_dbt", no_dbt)
    manifest = settings.dbt_target_dir / "manifest.json"
    assert manifest.exists()  # the build's parse wrote it: the thresholds come from dbt's own resolution
    from_manifest = freshness.thresholds_from_manifest(manifest)
    declared = {(t.source_name, t.table_name): t for t in from_manifest}
    assert declared[("web", "web_events")].warn_after == timedelta(days=1)
    assert declared[("web", "web_events")].error_after == timedelta(days=3)
    assert declared[("sales", "sales_orders")].error_after == timedelta(days=7)
    # the fallback before any parse reads the YAML to the same thresholds
    assert sorted(freshness.thresholds_from_yaml(freshness._sources_files(settings)),
                  key=lambda t: (t.source_name, t.table_name)) == sorted(
        from_manifest, key=lambda t: (t.source_name, t.table_name))

    shifts = {"web_events": 2, "service_tickets": 3, "sales_orders": 8}  # days back
    with wh.connect() as conn:
        for table, days in shifts.items():
            conn.execute(f"update raw.{table} set _loaded_at = _loaded_at - interval '{days} days'")  # noqa: S608
        conn.commit()
    try:
        results = freshness.check(wh, "stale_thresholds", action="warn", settings=settings)
        status = {(r.source_name, r.table_name): r for r in results}
        assert status[("web", "web_events")].status == "warn"  # 2 days: past warn_after (1), not error_after (3)
        assert status[("service", "service_tickets")].status == "warn"  # 3 days: past 2, not 7
        assert status[("sales", "sales_orders")].status == "error"  # 8 days: past 7
        assert status[("sales", "sales_customers")].status == "pass"
        assert 2 * 86400 < status[("web", "web_events")].age_seconds < 3 * 86400
        with wh.connect() as conn:
            recorded = dict(((s, t), st) for s, t, st in conn.execute(
                "select source_name, table_name, status from audit.source_freshness where run_id = 'stale_thresholds'"))
        assert recorded == {k: r.status for k, r in status.items()}
        with pytest.raises(freshness.StaleSources, match=r"sales.sales_orders \(last load") as raised:
            freshness.check(wh, "stale_thresholds_fail", action="fail", settings=settings)
        assert "web_events" not in str(raised.value)  # a warning does not fail the run
        # a deployment without sales: its tables are neither measured nor reported
        assert {r.source_name for r in freshness.check(wh, "web_only", settings=settings,
                                                       systems=("web", "service"))} == {"web", "service"}
    finally:
        with wh.connect() as conn:
            for table, days in shifts.items():
                conn.execute(f"update raw.{table} set _loaded_at = _loaded_at + interval '{days} days'")  # noqa: S608
            conn.commit()


def test_freshness_thresholds_from_yaml_follow_dbts_overrides(tmp_path):
    """Before any parse: a table's freshness overrides its source's, null turns it off, and a bad
    declaration is an error naming the file and the source."""
    good = tmp_path / "_crm__sources.yml"
    good.write_text("""
version: 2
sources:
  - name: crm
    schema: raw
    loaded_at_field: _loaded_at
    freshness:
      warn_after: {count: 12, period: hour}
      error_after: {count: 2, period: day}
    tables:
      - name: accounts
      - name: notes
        identifier: crm_notes
        freshness:
          warn_after: {count: 30, period: minute}
      - name: archive
        freshness: null
""")
    found = {t.table_name: t for t in freshness.thresholds_from_yaml([good])}
    assert set(found) == {"accounts", "notes"}
    assert found["accounts"].warn_after == timedelta(hours=12)
    assert found["accounts"].error_after == timedelta(days=2)
    assert found["notes"].warn_after == timedelta(minutes=30) and found["notes"].error_after is None
    assert found["notes"].identifier == "crm_notes"
    assert found["accounts"].status(13 * 3600) == "warn"
    assert found["accounts"].status(2 * 86400 + 1) == "error"
    assert found["accounts"].status(3600) == "pass"

    bad = tmp_path / "_bad__sources.yml"
    bad.write_text("""
version: 2
sources:
  - name: crm
    loaded_at_field: _loaded_at
    freshness:
      warn_after: {count: 2, period: week}
    tables:
      - name: accounts
""")
    with pytest.raises(freshness.FreshnessConfigError, match=r"_bad__sources.yml: source 'crm', table 'accounts'"):
        freshness.thresholds_from_yaml([bad])
    bad.write_text(bad.read_text().replace("period: week", "period: day").replace(
        "loaded_at_field: _loaded_at", "loaded_at_query: select max(x) from y"))
    with pytest.raises(freshness.FreshnessConfigError, match=r"table 'accounts': loaded_at_query"):
        freshness.thresholds_from_yaml([bad])
