"""Human-readable account of what a run built."""

from __future__ import annotations

from dataclasses import dataclass, field

from crm360.core.warehouse import Warehouse
from crm360.serve import charts


@dataclass
class RunSummary:
    """What a published (or failed) run built and checked: the run report's content, kept as JSON
    beside the health page and in audit.pipeline_run_history."""

    run_id: str
    as_of_date: str
    mart_rows: dict[str, int] = field(default_factory=dict)
    pyramid: list[dict] = field(default_factory=list)
    gates: list[dict] = field(default_factory=list)
    loads: list[dict] = field(default_factory=list)
    lifecycle: list[dict] = field(default_factory=list)
    rules_of_thumb: list[dict] = field(default_factory=list)
    # rule 8's what-if per variant and tier pair (marts.customer_upgrade_what_if)
    upgrade_what_if: list[dict] = field(default_factory=list)
    report: str | None = None
    # the latest snapshot's moves per pyramid (from_tier -> to_tier), and the published segments' sizes
    tier_movements: list[dict] = field(default_factory=list)
    segments: list[dict] = field(default_factory=list)
    # the deletion requests the run took up; "attention" is the line a person must read, if any
    erasures: list[dict] = field(default_factory=list)
    # the currency of every amount in the marts (marts.reporting_currency); None before it existed
    currency: str | None = None

    def attention(self) -> list[str]:
        return [e["attention"] for e in self.erasures if e.get("attention")]

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "as_of_date": self.as_of_date, "mart_rows": self.mart_rows,
                "pyramid": self.pyramid, "lifecycle": self.lifecycle, "rules_of_thumb": self.rules_of_thumb,
                "upgrade_what_if": self.upgrade_what_if,
                "gates": self.gates, "loads": self.loads, "report": self.report,
                "tier_movements": self.tier_movements, "segments": self.segments, "erasures": self.erasures,
                "currency": self.currency}


def _table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "  (none)"
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  " + "  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  " + "  ".join(v.rjust(w) if _numeric(v) else v.ljust(w)
                                      for v, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


def _numeric(value: str) -> bool:
    return value.replace(".", "", 1).replace("-", "", 1).replace(",", "").isdigit()


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}" if value >= 1 or value == 0 else f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def render(summary: RunSummary, wh: Warehouse) -> str:
    out = [f"crm360 run {summary.run_id} (as of {summary.as_of_date})", ""]
    if summary.currency:
        out += [f"Amounts (revenue, spend, values) in {summary.currency}, the reporting currency "
                "(marts.reporting_currency).", ""]
    attention = summary.attention()
    if attention:  # first, where nobody misses it
        out.append("ATTENTION: deletion requests")
        out += [f"  ! {line}" for line in attention]
        out.append("")
    out.append("Loaded into raw (all runs):")
    out.append(_table(summary.loads, ["source", "files", "rows", "quarantined"]))
    out.append("")
    out.append("Rows per mart:")
    out.append(_table([{"mart": f"marts.{k}", "rows": v} for k, v in summary.mart_rows.items()],
                      ["mart", "rows"]))
    out.append("")
    out.append("Customer pyramid (bar length by customers, top tier on top):")
    out.append(charts.text_pyramid(summary.pyramid))
    out.append("")
    out.append(_table(summary.pyramid, ["pyramid", "tier", "customers", "revenue",
                                        "share_of_customers", "share_of_revenue"]))
    out.append("")
    out.append("Tier movements since the previous snapshot (rows: from tier, columns: to tier):")
    out.append(charts.text_movements(summary.tier_movements, summary.pyramid))
    out.append("")
    out.append("Segments:")
    out.append(_table(charts.text_segments(summary.segments), list(charts.SEGMENT_COLUMNS))
               if summary.segments else "  (no segments)")
    out.append("")
    out.append("Lifecycle stages:")
    out.append(_table(summary.lifecycle, ["lifecycle_stage", "customers", "revenue"]))
    out.append("")
    out.append("Rules of thumb, measured on this data:")
    out.append(_table(summary.rules_of_thumb, ["rule_number", "measure", "rule", "measured_value",
                                               "expected_low", "expected_high", "holds"]))
    out.append("")
    out.append("Rule 8 what-if: buyers moved up one tier, given the tier above's mean (median) revenue;")
    out.append("revenue gained as a share of all, beside the moves up seen over the last snapshots:")
    out.append(_table([{**r, "tier_pair": "all" if r.get("is_total") else f"{r['from_tier']} -> {r['to_tier']}"}
                       for r in summary.upgrade_what_if],
                      ["variant", "tier_pair", "customers_moved", "uplift_mean_share", "uplift_median_share",
                       "observed_moves", "observed_change_share"]))
    out.append("")
    if summary.erasures:
        out.append("Deletion requests taken up by this run:")
        out.append(_table(summary.erasures, ["request_id", "identifier_type", "status", "customers_found",
                                             "rows_deleted"]))
        out.append("")
    out.append("Quality gates:")
    gate_rows = [{**g, "result": "PASS" if not g["failed"] else "FAIL"} for g in summary.gates]
    out.append(_table(gate_rows, ["stage", "suite", "checks", "failed", "result", "run_id"]))
    out.append("")
    out.append(f"Warehouse: {wh.describe()}")
    out.append("Query it:")
    out.append(f"  {wh.psql_command()} -c 'select * from marts.customer_pyramid_summary where is_current'")
    return "\n".join(out)
