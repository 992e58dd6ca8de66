"""One run-health view: after every run, success or failure, a row set in
``audit.run_health`` and an HTML page with gate results, source freshness,
rejected loads and row counts per layer."""

from __future__ import annotations

import html
import json
from datetime import UTC, date, datetime
from pathlib import Path

from psycopg import sql

from crm360 import charts
from crm360.settings import Settings, get_settings
from crm360.warehouse import Warehouse

LAYERS = ("raw", "staging", "intermediate", "marts")


def fetch_dicts(conn, query: str, params=()) -> list[dict]:
    """Rows of a query as dicts keyed by column name."""
    cur = conn.execute(query, params)
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def _exists(conn, relation: str) -> bool:
    return conn.execute("select to_regclass(%s) is not null", (relation,)).fetchone()[0]


GATE_SUMMARY = """
with this_run as (
    -- the run's newest verdict per stage (a gate run again appends its verdict)
    select g.run_id, g.stage, g.suite, g.success
    from audit.gate_results as g
    where g.run_id = %(run_id)s
      and g.checked_at = (select max(latest.checked_at) from audit.gate_results as latest
                          where latest.run_id = g.run_id and latest.stage = g.stage)
),
latest_raw as (
    -- raw gates that ran in the ingest DAGs' own runs: the newest verdict per suite
    select distinct on (suite) run_id, suite, checked_at
    from audit.gate_results
    where stage = 'raw' and not exists (select 1 from this_run where this_run.stage = 'raw')
    order by suite, checked_at desc
),
checks as (
    select run_id, stage, suite, success from this_run
    union all
    select g.run_id, g.stage, g.suite, g.success
    from audit.gate_results as g
    inner join latest_raw on g.run_id = latest_raw.run_id and g.suite = latest_raw.suite
        and g.checked_at = latest_raw.checked_at
)
select stage, suite, run_id, count(*) as checks, count(*) filter (where not success) as failed
from checks group by stage, suite, run_id order by stage desc, suite
"""


def gate_summary(conn, run_id: str) -> list[dict]:
    """Gate results behind a run: its own, plus the latest raw gates of the batches it built on."""
    return fetch_dicts(conn, GATE_SUMMARY, {"run_id": run_id})


def erasures(conn, run_id: str) -> list[dict]:
    """The deletion requests the run took up, each with the line a person must read (None if none)."""
    from crm360 import privacy

    return privacy.run_requests(conn, run_id) if _exists(conn, "audit.erasure_requests") else []


def collect(wh: Warehouse, run_id: str) -> dict:
    """Everything the health view shows for ``run_id``, read from the warehouse."""
    out: dict = {"layers": [], "gates": [], "failures": [], "freshness": [], "loads": [], "rejected": [],
                 "erasures": []}
    with wh.connect() as conn:
        relations = fetch_dicts(conn, """
            select table_schema as layer, table_name as relation, table_type
            from information_schema.tables where table_schema = any(%s)
            order by array_position(%s, table_schema::text), table_name""", (list(LAYERS), list(LAYERS)))
        for rel in relations:
            rows = conn.execute(sql.SQL("select count(*) from {}").format(
                sql.Identifier(rel["layer"], rel["relation"]))).fetchone()[0]
            out["layers"].append({**rel, "rows": rows})
        if _exists(conn, "audit.gate_results"):
            out["gates"] = gate_summary(conn, run_id)
            out["failures"] = fetch_dicts(conn, """
                select stage, suite, expectation, column_name, unexpected_count, observed_value, sample::text
                from audit.gate_results as g where run_id = %s and not success
                  and checked_at = (select max(latest.checked_at) from audit.gate_results as latest
                                    where latest.run_id = g.run_id and latest.stage = g.stage)
                order by stage desc, suite, column_name""", (run_id,))
        if _exists(conn, "audit.source_freshness"):
            out["freshness"] = fetch_dicts(conn, """
                select source_name, table_name, status, max_loaded_at, round(age_seconds / 3600, 1) as age_hours
                from audit.source_freshness where run_id = %s order by source_name, table_name""", (run_id,))
        if _exists(conn, "audit.load_files"):
            out["loads"] = fetch_dicts(conn, """
                select source, count(*) as files, sum(row_count)::bigint as rows,
                       count(*) filter (where batch_id like %s) as files_this_run
                from audit.load_files group by source order by source""", (f"{run_id}.%",))
        out["erasures"] = erasures(conn, run_id)
        if _exists(conn, "raw._quarantine"):
            out["rejected"] = fetch_dicts(conn, """select source_file, count(*) as rows from raw._quarantine
                                            group by source_file order by source_file""")
    return out


def record(wh: Warehouse, run_id: str, as_of: date | None, status: str, message: str | None = None,
           settings: Settings | None = None, summary: dict | None = None) -> Path:
    """Write audit.run_health for the run and render its HTML page; returns the page.

    ``summary`` (a published run's RunSummary as a dict) adds the customer pyramid, the
    tier movements and the segment sizes to the page."""
    settings = settings or get_settings()
    data = collect(wh, run_id)
    if summary:
        data["summary"] = summary
    now = datetime.now(UTC)
    rows = [("run", "status", "failed" if status != "success" else "ok", None, message)]
    rows += [(f"rows:{r['layer']}", r["relation"], "rows", r["rows"], r["table_type"]) for r in data["layers"]]
    rows += [(f"gate:{g['stage']}", g["suite"], "failed_checks", g["failed"], f"{g['checks']} checks")
             for g in data["gates"]]
    rows += [("freshness", f"{f['source_name']}.{f['table_name']}", f["status"], f["age_hours"],
              str(f["max_loaded_at"])) for f in data["freshness"]]
    rows += [("loads", f["source"], "files_this_run", f["files_this_run"], f"{f['rows']} rows in all")
             for f in data["loads"]]
    rows += [("quarantine", q["source_file"], "rows", q["rows"], None) for q in data["rejected"]]
    rows += [("erasure", f"request {e['request_id']}", e["status"], e["rows_deleted"], e["detail"])
             for e in data["erasures"]]
    with wh.connect() as conn:
        conn.execute("delete from audit.run_health where run_id = %s", (run_id,))
        with conn.cursor() as cur:
            cur.executemany(
                """insert into audit.run_health
                       (run_id, as_of_date, status, section, item, metric, value, detail, recorded_at)
                   values (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                [(run_id, as_of, status, s, i, m, v, d, now) for s, i, m, v, d in rows])
        conn.commit()
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    page = settings.reports_dir / f"run_{run_id}.html"
    page.write_text(render_html(run_id, as_of, status, message, data), encoding="utf-8")
    (settings.reports_dir / "latest.html").write_text(page.read_text(encoding="utf-8"), encoding="utf-8")
    return page


def _table(rows: list[dict], title: str) -> str:
    if not rows:
        return f"<h2>{html.escape(title)}</h2><p class=muted>none</p>"
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cls = ""
        if r.get("failed") or r.get("status") in ("error", "runtime error", "fail", "not_found", "refused"):
            cls = " class=bad"
        elif r.get("status") == "warn":
            cls = " class=warn"
        cells = "".join(f"<td>{html.escape('' if r[c] is None else str(r[c]))}</td>" for c in cols)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{''.join(body)}</table>"


def render_html(run_id: str, as_of: date | None, status: str, message: str | None, data: dict) -> str:
    ok = status == "success"
    banner = "PASSED: marts published" if ok else "FAILED: marts not published, yesterday's stay in place"
    parts = [
        "<!doctype html><html><head><meta charset=utf-8>",
        f"<title>crm360 run {html.escape(run_id)}</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin-bottom:1em}",
        "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.9em}th{background:#f3f3f3}",
        ".bad td{background:#fde2e2}.warn td{background:#fff4d6}.muted{color:#888}", charts.STYLE,
        ".attention{padding:.2em 1em;margin:.6em 0;background:#fde2e2;border:2px solid #c00}",
        f".banner{{padding:.6em 1em;font-weight:bold;background:{'#dff5e1' if ok else '#fde2e2'}}}",
        "</style></head><body>",
        f"<h1>crm360 run {html.escape(run_id)}</h1>",
        f"<p>as of {html.escape(str(as_of))}</p><p class=banner>{banner}</p>",
    ]
    attention = [e["attention"] for e in data.get("erasures") or [] if e.get("attention")]
    if attention:  # a request that deleted nobody, or an export left with the person: a person must act
        parts.append("<div class=attention><p><b>ATTENTION: deletion requests</b></p><ul>"
                     + "".join(f"<li>{html.escape(line)}</li>" for line in attention) + "</ul></div>")
    if message:
        parts.append(f"<pre>{html.escape(message)}</pre>")
    summary = data.get("summary")
    if summary:
        parts.append(charts.html_pyramids(summary.get("pyramid") or []))
        parts.append(charts.html_movements(summary.get("tier_movements") or [], summary.get("pyramid") or []))
        parts.append(charts.html_segments(summary.get("segments") or []))
    parts.append(_table([{k: v for k, v in e.items() if k != "attention"} for e in data.get("erasures") or []],
                        "Deletion requests taken up by this run"))
    parts.append(_table(data["failures"], "Failed checks (sample offending rows)"))
    parts.append(_table(data["gates"], "Quality gates"))
    parts.append(_table(data["freshness"], "Source freshness"))
    parts.append(_table(data["loads"], "Loads"))
    parts.append(_table(data["rejected"], "Quarantined rows"))
    parts.append(_table(data["layers"], "Rows per layer"))
    parts.append("</body></html>")
    return "\n".join(parts)


def to_json(data: dict) -> str:
    return json.dumps(data, default=str, indent=2)
