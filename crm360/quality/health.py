"""One run-health view: after every run, success or failure, a row set in
``audit.run_health`` and an HTML page with gate results, source freshness,
rejected loads and row counts per layer."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from psycopg import sql
from psycopg.rows import dict_row

from crm360.core.warehouse import Warehouse

LAYERS = ("raw", "staging", "intermediate", "marts")


def fetch_dicts(conn, query: str, params=()) -> list[dict]:
    """Rows of a query as dicts keyed by column name."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


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


def attention(request_id: int, kind: str, status: str, detail: str | None) -> str | None:
    """The line a person must read about a processed request, or None when it went as asked."""
    if status == "not_found":
        return f"deletion request {request_id} ({kind}) found nobody: {detail}"
    if status == "refused":
        return f"deletion request {request_id} ({kind}) was refused: {detail}"
    if detail:
        return f"deletion request {request_id} ({kind}) was applied, but: {detail}"
    return None


def run_requests(conn, run_id: str) -> list[dict]:
    """The requests a run took up, with the line a person must read about each (None if none)."""
    rows = conn.execute("""select request_id, identifier_type, status, customers_found, rows_deleted, detail
                           from audit.erasure_requests where applied_run_id = %s order by request_id""",
                        (run_id,)).fetchall()
    keys = ("request_id", "identifier_type", "status", "customers_found", "rows_deleted", "detail")
    return [{**dict(zip(keys, r, strict=True)), "attention": attention(r[0], r[1], r[2], r[5])} for r in rows]


def erasures(conn, run_id: str) -> list[dict]:
    """The deletion requests the run took up (crm360.privacy), with the line a person must read."""
    return run_requests(conn, run_id) if _exists(conn, "audit.erasure_requests") else []


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
           summary: dict | None = None) -> dict:
    """Write audit.run_health for the run; returns what it recorded (``collect``'s data, with
    ``summary``, a published run's RunSummary as a dict, added), for the run's page
    (crm360.serve.health_page)."""
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
    return data


def to_json(data: dict) -> str:
    return json.dumps(data, default=str, indent=2)
