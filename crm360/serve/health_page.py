"""The run-health page: an HTML page per run (and latest.html) showing what the run recorded in
audit.run_health (crm360.quality.health): failed checks with sample offending rows, the gates,
freshness, loads, quarantine, rows per layer and, for a published run, the pyramids, tier
movements and segment sizes. Plain HTML with inline SVG: no scripts, nothing from the network."""

from __future__ import annotations

import html
from datetime import date
from pathlib import Path

from crm360.core.settings import Settings, get_settings
from crm360.serve import charts


def write(run_id: str, as_of: date | None, status: str, message: str | None, data: dict,
          settings: Settings | None = None) -> Path:
    """Write the run's page and latest.html; returns the run's page."""
    settings = settings or get_settings()
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


