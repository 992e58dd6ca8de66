"""The run report's pictures, rendered from a RunSummary built by hand (no warehouse)."""

from __future__ import annotations

import re
from pathlib import Path

from crm360.pipeline import RunSummary
from crm360.serve import charts, health_page, report


class _Warehouse:
    def describe(self) -> str:
        return "test warehouse"

    def psql_command(self) -> str:
        return "psql test"


def _summary(segments: list[dict] | None = None) -> RunSummary:
    pyramid = [
        {"pyramid": "revenue", "tier": "top", "customers": 10, "revenue": 5000.0,
         "share_of_customers": 0.01, "share_of_revenue": 0.5},
        {"pyramid": "revenue", "tier": "big", "customers": 40, "revenue": 2000.0,
         "share_of_customers": 0.04, "share_of_revenue": 0.2},
        {"pyramid": "revenue", "tier": "medium", "customers": 150, "revenue": 2000.0,
         "share_of_customers": 0.15, "share_of_revenue": 0.2},
        {"pyramid": "revenue", "tier": "small", "customers": 800, "revenue": 1000.0,
         "share_of_customers": 0.8, "share_of_revenue": 0.1},
        {"pyramid": "activity", "tier": "active", "customers": 300, "revenue": 9000.0,
         "share_of_customers": 0.3, "share_of_revenue": 0.9},
        {"pyramid": "activity", "tier": "suspect", "customers": 700, "revenue": 1000.0,
         "share_of_customers": 0.7, "share_of_revenue": 0.1},
    ]
    move = {"snapshot_date": "2026-11-01", "previous_snapshot_date": "2026-10-01", "pyramid": "revenue"}
    movements = [
        {**move, "from_tier": "top", "to_tier": "top", "movement": "same", "customers": 8},
        {**move, "from_tier": "top", "to_tier": "big", "movement": "down", "customers": 2},
        {**move, "from_tier": "small", "to_tier": "medium", "movement": "up", "customers": 17},
        {**move, "from_tier": "small", "to_tier": "small", "movement": "same", "customers": 700},
        {**move, "from_tier": None, "to_tier": "small", "movement": "entered", "customers": 33},
    ]
    return RunSummary(run_id="r1", as_of_date="2026-11-01", pyramid=pyramid, tier_movements=movements,
                      segments=segments if segments is not None else [
                          {"segment_name": "vip_at_risk", "description": "Top customers gone quiet",
                           "version": 2, "customers": 1234, "contactable_customers": 567,
                           "as_of_date": "2026-11-01"},
                          {"segment_name": "win_back", "description": "<b>lapsed</b>", "version": 1,
                           "customers": 89, "contactable_customers": 12, "as_of_date": "2026-11-01"}])


def _bar(text: str, tier: str) -> str:
    line = next(line for line in text.splitlines() if re.search(rf"{charts.BAR}\s+{tier}\s", line))
    return line.split(tier)[0].strip()


def test_text_pyramid_is_centred_top_tier_narrowest_with_numbers():
    text = report.render(_summary(), _Warehouse())
    top, small = _bar(text, "top"), _bar(text, "small")
    assert set(top) == {charts.BAR} and 0 < len(top) < len(small) == charts.TEXT_WIDTH
    # centred: equal space either side, within one character
    line = next(line for line in text.splitlines() if re.search(rf"{charts.BAR}\s+top\s", line))
    chart = line[4:4 + charts.TEXT_WIDTH]
    assert abs((len(chart) - len(chart.lstrip())) - (len(chart) - len(chart.rstrip()))) <= 1
    assert re.search(r"top\s+10 customers\s+1\.0 %,\s+50\.0 % of revenue", text)
    assert re.search(r"small\s+800 customers\s+80\.0 %,\s+10\.0 % of revenue", text)
    # the activity pyramid is drawn too, under its own heading
    assert "  activity:" in text and "  revenue:" in text


def test_text_report_shows_tier_movements_and_segment_sizes():
    text = report.render(_summary(), _Warehouse())
    assert "revenue, from 2026-10-01 to 2026-11-01: up 17, down 2, same 708, entered 33" in text
    matrix = text.split("from \\ to", 1)[1].splitlines()
    assert matrix[0].split() == ["top", "big", "medium", "small"]
    assert next(r for r in matrix if r.strip().startswith("small")).split() == ["small", ".", ".", "17", "700"]
    assert next(r for r in matrix if r.strip().startswith("(new)")).split() == ["(new)", ".", ".", ".", "33"]
    segments = text.split("Segments:", 1)[1]
    assert re.search(r"vip_at_risk\s+Top customers gone quiet\s+2\s+1,234\s+567", segments)
    assert re.search(r"win_back .*\s89\s+12\s", segments)


def test_report_without_segments_says_so():
    summary = _summary(segments=[])
    assert "Segments:\n  (no segments)" in report.render(summary, _Warehouse())
    assert "(no segments)" in charts.html_segments([])
    # a summary written before segments existed still loads (crm360 show reads old JSON)
    old = {k: v for k, v in summary.as_dict().items() if k not in ("tier_movements", "segments")}
    assert RunSummary(**old).segments == []


def test_html_page_has_an_svg_pyramid_movements_and_segments(tmp_path: Path):
    summary = _summary()
    data = {"failures": [], "gates": [], "freshness": [], "loads": [], "rejected": [], "layers": [],
            "summary": summary.as_dict()}
    page = health_page.render_html("r1", None, "success", None, data)
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    bars = re.findall(r'<rect x="([\d.]+)" y="\d+" width="(\d+)"[^>]*data-tier="(\w+)"', page)
    widths = {t: int(w) for _, w, t in bars}
    assert 0 < widths["top"] < widths["big"] < widths["medium"] < widths["small"]
    # bars are centred on the same axis
    xs = {t: float(x) + int(w) / 2 for x, w, t in bars}
    assert len({round(v, 1) for v in xs.values()}) == 1
    assert "10 customers (1.0 %), 50.0 % of revenue" in page
    assert "up 17, down 2, same 708, entered 33" in page and "<td class=up>17</td>" in page
    assert "<td class=down>2</td>" in page
    assert "vip_at_risk" in page and "1,234" in page and "567" in page
    assert "&lt;b&gt;lapsed&lt;/b&gt;" in page and "<b>lapsed</b>" not in page


def test_a_failed_run_page_has_no_pyramid():
    page = health_page.render_html("r1", None, "failed", "boom", {"failures": [], "gates": [], "freshness": [],
                                                              "loads": [], "rejected": [], "layers": []})
    assert "Customer pyramid" not in page and "<svg" not in page


def test_every_template_ships_in_the_wheel_and_escapes():
    """The pages are package data: a template the package-data globs miss renders from a checkout
    and fails once installed. Every template renders with autoescape on."""
    import fnmatch
    import tomllib

    from crm360.serve import pages

    root = Path(pages.__file__).parent
    project = tomllib.loads((root.parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    globs = project["tool"]["setuptools"]["package-data"]["crm360.serve"]
    templates = sorted(p.relative_to(root).as_posix() for p in (root / "templates").rglob("*") if p.is_file())
    assert templates, "no templates found"
    for name in templates:
        assert any(fnmatch.fnmatch(name, g) for g in globs), f"{name} is not package data ({globs})"
    assert pages.environment().autoescape is True
    assert "&lt;b&gt;" in pages.render("error.html", title="t", message="<b>")


def test_text_report_shows_every_rule_and_the_upgrade_what_if():
    rules = [{"rule_number": n, "measure": m, "rule": f"rule {n}", "measured_value": v, "expected_low": 0.0,
              "expected_high": None, "holds": h}
             for n, m, v, h in [(1, "top_20_revenue_share", 0.68, False),
                                (4, "small_reached_top_share", 0.01, True),
                                (7, "department_marketing", None, None),
                                (8, "upgrade_two_percent_uplift", 0.23, False)]]
    what_if = [{"variant": "nearest_boundary", "from_tier": "small", "to_tier": "medium",
                "is_total": False, "customers_moved": 16, "uplift_mean_share": 0.0412, "uplift_median_share": 0.03,
                "observed_moves": 40, "observed_change_share": 0.02},
               {"variant": "nearest_boundary", "from_tier": None, "to_tier": None, "is_total": True,
                "customers_moved": 20, "uplift_mean_share": 0.2301, "uplift_median_share": 0.1,
                "observed_moves": 55, "observed_change_share": 0.05}]
    summary = _summary()
    summary.rules_of_thumb, summary.upgrade_what_if = rules, what_if
    text = report.render(summary, _Warehouse())
    rules_part = text.split("Rules of thumb, measured on this data:", 1)[1].split("Rule 8 what-if", 1)[0]
    assert re.search(r"1\s+top_20_revenue_share\s+rule 1\s+0\.6800\s+0\.00\s+no", rules_part)
    assert re.search(r"7\s+department_marketing\s+rule 7\s+0\.00\s*\n", rules_part)
    assert re.search(r"8\s+upgrade_two_percent_uplift\s+rule 8\s+0\.2300\s+0\.00\s+no", rules_part)
    what_if_part = text.split("Rule 8 what-if", 1)[1].split("Quality gates:", 1)[0]
    assert re.search(r"nearest_boundary\s+small -> medium\s+16\s+0\.0412\s+0\.0300\s+40\s+0\.0200", what_if_part)
    assert re.search(r"nearest_boundary\s+all\s+20\s+0\.2301\s+0\.1000\s+55\s+0\.0500", what_if_part)
    # the summary keeps the what-if in its JSON and loads it back
    assert RunSummary(**summary.as_dict()).upgrade_what_if == what_if
