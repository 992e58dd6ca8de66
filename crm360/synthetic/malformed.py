"""Malformed records: where a day's file gets them, how each is spelled, and the manifest's list of them."""

from __future__ import annotations

import csv
import io
import random
from datetime import date, timedelta

from crm360.synthetic.config import GeneratorConfig
from crm360.synthetic.model import FILE_KINDS, STREAM_MALFORMED, seed_for

MALFORMED_FILES = {"c": "customers.csv", "o": "orders.csv", "l": "order_lines.csv", "e": "events"}




def malformed_plan(cfg: GeneratorConfig, day: date, kind: str, n: int) -> list[tuple[int, str, float]]:
    """Where a file gets malformed records: (after valid record r, kind, variant draw), r ascending.

    Depends only on the day, the file and how many valid records it holds, so the manifest
    can list them without the file's content, and a file with fewer than ``malformed_every``
    records never gets any.
    """
    every = cfg.malformed_every
    if kind not in MALFORMED_FILES or every <= 0 or n < every or cfg.malformed_rate <= 0:
        return []
    rng = random.Random(seed_for(cfg.seed, STREAM_MALFORMED, FILE_KINDS.index(kind), day.toordinal()))
    p = min(1.0, cfg.malformed_rate * every)
    plan = []
    for slot in range(n // every):
        hit = rng.random() < p
        after = slot * every + rng.randrange(1, every + 1)
        variant = rng.random()
        if not hit:
            continue
        if kind == "e":
            name = "broken_json" if variant < 0.5 else "invalid_utf8"
        elif kind == "l":
            name = "negative_quantity"
        else:
            name = "bad_date"
        plan.append((after, name, variant))
    return plan


def _file_name(kind: str, day: date) -> str:
    if kind == "e":
        return f"web/events_{day.isoformat()}.jsonl"
    return f"sales/{day.isoformat()}/{MALFORMED_FILES[kind]}"


def malformed_manifest(cfg: GeneratorConfig, start: date, counts: dict[str, list[int]]) -> list[dict]:
    out = []
    for kind in MALFORMED_FILES:
        for d, n in enumerate(counts[kind]):
            day = start + timedelta(days=d)
            header = 0 if kind == "e" else 1
            for i, (after, name, _) in enumerate(malformed_plan(cfg, day, kind, n)):
                out.append({"file": _file_name(kind, day), "line": header + after + i + 1, "kind": name})
    out.sort(key=lambda m: (m["file"], m["line"]))
    return out


def _bad_date(value: str, variant: float) -> str:
    """An impossible calendar date in the same shape (2026-02-30T...), or the word people type."""
    if variant < 0.3:
        return "yesterday"
    month = int(value[5:7])
    day = "30" if month == 2 else "31" if month in (4, 6, 9, 11) else "32"
    return f"{value[:8]}{day}{value[10:]}"


def corrupt(kind: str, payload: str, name: str, variant: float) -> bytes:
    if name == "broken_json":
        return payload[: len(payload) // 2].encode("utf-8")
    if name == "invalid_utf8":
        return payload.encode("utf-8").replace(b'"page": "', b'"page": "\xff\xfe', 1)
    values = next(csv.reader([payload]))
    if name == "negative_quantity":
        values[3] = f"-{values[3]}"
    else:  # bad_date: customers.created_at or orders.ordered_at
        column = 15 if kind == "c" else 2
        values[column] = _bad_date(values[column], variant)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(values)
    return buffer.getvalue().encode("utf-8")
