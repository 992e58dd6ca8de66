"""The run-health page: an HTML page per run (and latest.html) showing what the run recorded in
audit.run_health (crm360.quality.health): failed checks with sample offending rows, the gates,
freshness, loads, quarantine, rows per layer and, for a published run, the pyramids, tier
movements and segment sizes. Rendered from templates/health.html: plain HTML with inline SVG,
every value escaped, no scripts, nothing from the network."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from crm360.core.settings import Settings, get_settings
from crm360.serve import charts, pages


def write(run_id: str, as_of: date | None, status: str, message: str | None, data: dict,
          settings: Settings | None = None) -> Path:
    """Write the run's page and latest.html; returns the run's page."""
    settings = settings or get_settings()
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    page = settings.reports_dir / f"run_{run_id}.html"
    page.write_text(render_html(run_id, as_of, status, message, data), encoding="utf-8")
    (settings.reports_dir / "latest.html").write_text(page.read_text(encoding="utf-8"), encoding="utf-8")
    return page


BAD = ("error", "runtime error", "fail", "not_found", "refused")


def _section(rows: list[dict], title: str) -> dict:
    """A table of the page: its columns (the first row's keys), and each row's cells and mark
    (bad for a failure, warn for a warning)."""
    columns = list(rows[0]) if rows else []
    out = []
    for r in rows:
        mark = "bad" if r.get("failed") or r.get("status") in BAD else "warn" if r.get("status") == "warn" else None
        out.append({"mark": mark, "cells": [r[c] for c in columns]})
    return {"title": title, "columns": columns, "rows": out}


def render_html(run_id: str, as_of: date | None, status: str, message: str | None, data: dict) -> str:
    summary = data.get("summary")
    charts_html = None
    if summary:
        pyramid = summary.get("pyramid") or []
        charts_html = {"pyramids": charts.html_pyramids(pyramid),
                       "movements": charts.html_movements(summary.get("tier_movements") or [], pyramid),
                       "segments": charts.html_segments(summary.get("segments") or [])}
    erasures = data.get("erasures") or []
    sections = [
        _section([{k: v for k, v in e.items() if k != "attention"} for e in erasures],
                 "Deletion requests taken up by this run"),
        _section(data["failures"], "Failed checks (sample offending rows)"),
        _section(data["gates"], "Quality gates"),
        _section(data["freshness"], "Source freshness"),
        _section(data["loads"], "Loads"),
        _section(data["rejected"], "Quarantined rows"),
        _section(data["layers"], "Rows per layer"),
    ]
    # a request that deleted nobody, or an export left with the person: a person must act
    attention = [e["attention"] for e in erasures if e.get("attention")]
    return pages.render("health.html", run_id=run_id, as_of=str(as_of), passed=status == "success",
                        attention=attention, message=message, charts=charts_html, sections=sections)
