"""The run report's pictures: the customer pyramid, tier movements and segment sizes,
drawn as text for the terminal and as inline SVG/HTML for the run health page.

Everything here works on plain rows (the dicts a RunSummary carries), so it can be
tested without a warehouse. The HTML uses no scripts and loads nothing.
"""

from __future__ import annotations

import html
from collections import defaultdict

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


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def svg_pyramid(pyramid: str, tiers: list[dict], width: int = 540, bar_area: int = 220, row_height: int = 34) -> str:
    """An inline SVG pyramid: one centred bar per tier, top tier on top, width by customers,
    labelled with the tier, its customers and its shares of customers and revenue."""
    gap = 6
    height = len(tiers) * (row_height + gap) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class=pyramid width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(pyramid)} pyramid">',
             f'<text x="{bar_area // 2}" y="16" text-anchor="middle" font-weight="bold">{_e(pyramid)}</text>']
    for i, (tier, bar) in enumerate(zip(tiers, bar_widths(tiers, bar_area), strict=True)):
        y = 26 + i * (row_height + gap)
        x = (bar_area - bar) / 2
        colour = COLOURS[min(i, len(COLOURS) - 1)]
        customers = int(tier["customers"] or 0)
        parts.append(f'<rect x="{x:.1f}" y="{y}" width="{bar}" height="{row_height}" fill="{colour}" '
                     f'data-tier="{_e(tier["tier"])}" data-customers="{customers}"><title>{_e(tier["tier"])}: '
                     f'{customers:,} customers</title></rect>')
        label_x = bar_area + 12
        parts.append(f'<text x="{label_x}" y="{y + 14}" font-weight="bold">{_e(tier["tier"])}</text>')
        parts.append(f'<text x="{label_x}" y="{y + 29}" font-size="12">{customers:,} customers '
                     f'({_e(_pct(tier.get("share_of_customers")))}), '
                     f'{_e(_pct(tier.get("share_of_revenue")))} of revenue</text>')
    parts.append("</svg>")
    return "".join(parts)


def html_pyramids(rows: list[dict]) -> str:
    if not rows:
        return "<h2>Customer pyramid</h2><p class=muted>no pyramid</p>"
    svgs = "".join(f"<figure>{svg_pyramid(p, tiers)}</figure>" for p, tiers in by_pyramid(rows).items())
    return f"<h2>Customer pyramid</h2><div class=pyramids>{svgs}</div>"


def html_movements(movements: list[dict], pyramid_rows: list[dict]) -> str:
    if not movements:
        return "<h2>Tier movements</h2><p class=muted>no tier movements</p>"
    parts = ["<h2>Tier movements</h2><div class=pyramids>"]
    for pyramid, rows in by_pyramid(movements).items():
        counts = movement_counts(rows)
        tiers = tier_order(pyramid_rows, rows, pyramid)
        matrix = movement_matrix(rows)
        froms = tiers + ([NEW] if any(k[0] == NEW for k in matrix) else [])
        rank = {t: i for i, t in enumerate(tiers)}
        head = "".join(f"<th>{_e(t)}</th>" for t in tiers)
        body = []
        for f in froms:
            cells = []
            for t in tiers:
                n = matrix.get((f, t))
                cls = ""
                if n and f != NEW:
                    cls = " class=same" if f == t else (" class=up" if rank[t] < rank[f] else " class=down")
                cells.append(f"<td{cls}>{'' if n is None else f'{n:,}'}</td>")
            body.append(f"<tr><th>{_e(f)}</th>{''.join(cells)}</tr>")
        summary = ", ".join(f"{k} {v:,}" for k, v in counts.items())
        parts.append(f"<figure><figcaption><b>{_e(pyramid)}</b>, {_e(_movement_span(rows))}<br>{_e(summary)}"
                     f"</figcaption><table class=matrix><tr><th>from \\ to</th>{head}</tr>{''.join(body)}</table>"
                     "</figure>")
    parts.append("</div>")
    return "".join(parts)


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


def html_segments(segments: list[dict]) -> str:
    if not segments:
        return "<h2>Segments</h2><p class=muted>(no segments)</p>"
    largest = max(int(s.get("customers") or 0) for s in segments) or 1
    rows = []
    for s in segments:
        n = int(s.get("customers") or 0)
        bar = (f'<svg width="160" height="12"><rect width="{max(1, round(n / largest * 160)) if n else 0}" height="12" '
               'fill="#4f7fd0"/></svg>')
        rows.append(f"<tr><td>{_e(s.get('segment_name'))}</td><td>{_e(s.get('description'))}</td>"
                    f"<td>{_e(s.get('version'))}</td><td class=num>{n:,}</td>"
                    f"<td class=num>{int(s.get('contactable_customers') or 0):,}</td><td>{bar}</td></tr>")
    return ("<h2>Segments</h2><table><tr><th>segment</th><th>description</th><th>version</th><th>customers</th>"
            f"<th>contactable</th><th></th></tr>{''.join(rows)}</table>")


STYLE = (".pyramids{display:flex;flex-wrap:wrap;gap:2em}figure{margin:0}"
         ".pyramid text{font-family:system-ui,sans-serif;font-size:13px;fill:#222}"
         ".matrix td{text-align:right;min-width:4em}.matrix td.up{background:#dff5e1}"
         ".matrix td.down{background:#fde2e2}.matrix td.same{background:#eef1f6}td.num{text-align:right}")
