"""The run report's pictures: the customer pyramid, tier movements and segment sizes,
drawn as text for the terminal and as inline SVG/HTML for the run health page (the
macros in templates/_charts.html draw what the figures here compute).

Everything here works on plain rows (the dicts a RunSummary carries), so it can be
tested without a warehouse. The HTML uses no scripts and loads nothing.
"""

from __future__ import annotations

from collections import defaultdict

from markupsafe import Markup

from crm360.serve import pages

BAR = "\u2588"
TEXT_WIDTH = 40
NEW = "(new)"
MOVES = ("up", "down", "same", "entered")
# top tier first: a dark blue fading to a light one
COLOURS = ("#1f3b73", "#2f5aa8", "#4f7fd0", "#84a9e6", "#b9cef2", "#dbe6f8")


def by_pyramid(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows grouped by pyramid, in the order given (the summary orders tiers top first)."""
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["pyramid"], []).append(row)
    return out


def bar_widths(tiers: list[dict], width: int) -> list[int]:
    """Each tier's bar length, proportional to its customers; the largest tier fills ``width``.
    A tier with customers is at least one unit wide, so no tier disappears."""
    largest = max((int(t["customers"] or 0) for t in tiers), default=0)
    if largest <= 0:
        return [0 for _ in tiers]
    return [max(1, round(int(t["customers"] or 0) / largest * width)) if t["customers"] else 0 for t in tiers]


def _pct(share) -> str:
    return "" if share is None else f"{float(share) * 100:.1f} %"


def text_pyramid(rows: list[dict], width: int = TEXT_WIDTH) -> str:
    """One centred bar chart per pyramid, top tier on top, bar length by customers."""
    if not rows:
        return "  (no pyramid)"
    out = []
    for pyramid, tiers in by_pyramid(rows).items():
        out.append(f"  {pyramid}:")
        name_width = max(len(str(t["tier"])) for t in tiers)
        count_width = max(len(f"{int(t['customers'] or 0):,}") for t in tiers)
        for tier, bar in zip(tiers, bar_widths(tiers, width), strict=True):
            left = (width - bar) // 2
            line = " " * left + BAR * bar + " " * (width - bar - left)
            out.append(f"    {line}  {str(tier['tier']).ljust(name_width)}  "
                       f"{int(tier['customers'] or 0):>{count_width},} customers "
                       f"{_pct(tier.get('share_of_customers')).rjust(8)}, "
                       f"{_pct(tier.get('share_of_revenue')).rjust(7)} of revenue")
        out.append("")
    return "\n".join(out).rstrip("\n")


def tier_order(pyramid_rows: list[dict], movement_rows: list[dict], pyramid: str) -> list[str]:
    """Tiers of one pyramid top first: as the pyramid lists them, then any others met in the movements."""
    order = [str(r["tier"]) for r in pyramid_rows if r["pyramid"] == pyramid]
    for r in movement_rows:
        for tier in (r.get("from_tier"), r.get("to_tier")):
            if r["pyramid"] == pyramid and tier is not None and str(tier) not in order:
                order.append(str(tier))
    return order


def movement_counts(rows: list[dict]) -> dict[str, int]:
    counts = dict.fromkeys(MOVES, 0)
    for r in rows:
        counts[r["movement"]] = counts.get(r["movement"], 0) + int(r["customers"] or 0)
    return counts


def movement_matrix(rows: list[dict]) -> dict[tuple[str, str], int]:
    """(from tier or '(new)', to tier) -> customers."""
    matrix: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows:
        frm = NEW if r.get("from_tier") is None else str(r["from_tier"])
        matrix[(frm, str(r["to_tier"]))] += int(r["customers"] or 0)
    return dict(matrix)


def _movement_span(rows: list[dict]) -> str:
    first = rows[0]
    if first.get("previous_snapshot_date"):
        return f"from {first['previous_snapshot_date']} to {first['snapshot_date']}"
    return f"into {first['snapshot_date']} (first snapshot: everyone enters)"


def text_movements(movements: list[dict], pyramid_rows: list[dict]) -> str:
    """Per pyramid: up/down/same/entered counts and the from-tier x to-tier matrix."""
    if not movements:
        return "  (no tier movements)"
    out = []
    for pyramid, rows in by_pyramid(movements).items():
        counts = movement_counts(rows)
        out.append(f"  {pyramid}, {_movement_span(rows)}: "
                   + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        tiers = tier_order(pyramid_rows, rows, pyramid)
        matrix = movement_matrix(rows)
        froms = tiers + ([NEW] if any(k[0] == NEW for k in matrix) else [])
        head = "from \\ to"
        cells = [[f"{matrix[(f, t)]:,}" if (f, t) in matrix else "." for t in tiers] for f in froms]
        first = max(len(head), *(len(f) for f in froms))
        widths = [max(len(t), *(len(row[i]) for row in cells)) for i, t in enumerate(tiers)]
        for label, row in [(head, tiers), *zip(froms, cells, strict=True)]:
            out.append("    " + label.ljust(first) + "  "
                       + "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        out.append("")
    return "\n".join(out).rstrip("\n")


def pyramid_figure(pyramid: str, tiers: list[dict], width: int = 540, bar_area: int = 220,
                   row_height: int = 34) -> dict:
    """What the SVG pyramid draws: one centred bar per tier, top tier on top, width by customers,
    labelled with the tier, its customers and its shares of customers and revenue."""
    gap = 6
    bars = []
    for i, (tier, bar) in enumerate(zip(tiers, bar_widths(tiers, bar_area), strict=True)):
        bars.append({"tier": tier["tier"], "customers": int(tier["customers"] or 0), "width": bar,
                     "x": f"{(bar_area - bar) / 2:.1f}", "y": 26 + i * (row_height + gap),
                     "colour": COLOURS[min(i, len(COLOURS) - 1)],
                     "share_of_customers": _pct(tier.get("share_of_customers")),
                     "share_of_revenue": _pct(tier.get("share_of_revenue"))})
    return {"pyramid": pyramid, "width": width, "height": len(tiers) * (row_height + gap) + 30,
            "bar_area": bar_area, "label_x": bar_area + 12, "row_height": row_height, "bars": bars}


def movement_figure(pyramid: str, rows: list[dict], pyramid_rows: list[dict]) -> dict:
    """What the movement matrix shows: from-tier rows, to-tier columns, each cell's customers and
    whether they moved up, down or stayed (an entry from '(new)' is none of them)."""
    tiers = tier_order(pyramid_rows, rows, pyramid)
    matrix = movement_matrix(rows)
    froms = tiers + ([NEW] if any(k[0] == NEW for k in matrix) else [])
    rank = {t: i for i, t in enumerate(tiers)}
    grid = []
    for f in froms:
        cells = []
        for t in tiers:
            n = matrix.get((f, t))
            move = None
            if n and f != NEW:
                move = "same" if f == t else ("up" if rank[t] < rank[f] else "down")
            cells.append({"customers": n, "move": move})
        grid.append({"from_tier": f, "cells": cells})
    summary = ", ".join(f"{k} {v:,}" for k, v in movement_counts(rows).items())
    return {"pyramid": pyramid, "span": _movement_span(rows), "summary": summary, "tiers": tiers, "rows": grid}


def _macro(name: str):
    return getattr(pages.environment().get_template("_charts.html").module, name)


def svg_pyramid(pyramid: str, tiers: list[dict]) -> Markup:
    return _macro("pyramid")(pyramid_figure(pyramid, tiers))


def html_pyramids(rows: list[dict]) -> Markup:
    return _macro("pyramids")([pyramid_figure(p, tiers) for p, tiers in by_pyramid(rows).items()])


def html_movements(movements: list[dict], pyramid_rows: list[dict]) -> Markup:
    return _macro("movements")([movement_figure(p, rows, pyramid_rows) for p, rows in by_pyramid(movements).items()])


SEGMENT_COLUMNS = ("segment_name", "description", "version", "customers", "contactable_customers", "as_of_date")


def text_segments(segments: list[dict], width: int = 60) -> list[dict]:
    """The segment rows the text report tabulates, descriptions cut to ``width`` characters."""
    out = []
    for s in segments:
        row = {c: s.get(c) for c in SEGMENT_COLUMNS}
        text = " ".join(str(row["description"] or "").split())
        row["description"] = text if len(text) <= width else text[:width - 1].rstrip() + "\u2026"
        out.append(row)
    return out


def html_segments(segments: list[dict]) -> Markup:
    """The published segments with a bar by size (the largest fills the bar)."""
    largest = max((int(s.get("customers") or 0) for s in segments), default=0) or 1
    rows = []
    for s in segments:
        n = int(s.get("customers") or 0)
        rows.append({**{c: s.get(c) for c in SEGMENT_COLUMNS}, "customers": n,
                     "contactable_customers": int(s.get("contactable_customers") or 0),
                     "bar": max(1, round(n / largest * 160)) if n else 0})
    return _macro("segments")(rows)
