"""Deterministic synthetic source systems, with the dirt of real exports.

Writes what three real systems would hand over, one drop per UTC day:

    landing/sales/<date>/customers.csv      customers created that day, and rows of customers changed that day
    landing/sales/<date>/orders.csv         orders placed that day, and rows of orders returned/refunded that day
    landing/sales/<date>/order_lines.csv    lines of the orders placed that day
    landing/sales/<date>/products.csv       the catalogue (first day), re-sent rows on price changes
    landing/service/tickets_<date>.json     helpdesk export: {"exported_at", "tickets": [...]}
    landing/web/events_<date>.jsonl         one web event per line

plus ``landing/manifest.json``, the generator's own truth, which tests reconcile the
warehouse against. The same seed and configuration always give the same bytes.

The people behind the data behave like a customer base: revenue is concentrated in a
few (Pareto weights), customers lapse and some come back, complaints make them lapse
sooner, follow-up calls make them buy more, guests check out without an account,
newsletter sign-ups stay prospects or later register, anonymous visitors browse.
``sim`` and the modules it names hold the behaviour, ``text`` the spelling; ``config`` the
presets, ``world`` what a run returns, ``files`` and ``malformed`` how the drops are written,
``parallel`` the worker processes. This module runs the simulation and is the public entry.

The dirt real exports carry is on by default at small rates, each in a config field:
exact duplicate rows and events, messy e-mails, phones in many formats and
placeholders, late web events, mixed UTC offsets, and a few malformed records (only
in files of at least ``malformed_every`` records, at most one per that many, each
listed in the manifest so the loader's quarantine can be checked).

Generation streams: every person is simulated on its own random streams, records go
to per-day buffers that spill to a spool folder, and each day's files are sorted and
written at the end. History can be extended by one day (:func:`generate_next_day`)
with exactly the bytes a longer run would have written.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from tqdm import tqdm

from crm360.synthetic import parallel
from crm360.synthetic.config import KEEP_RECORDS_UP_TO, PRESETS, GeneratorConfig
from crm360.synthetic.files import write_days
from crm360.synthetic.malformed import malformed_manifest
from crm360.synthetic.model import (
    CATEGORIES,
    FILE_KINDS,
    KIND_GUEST,
    KIND_PROSPECT,
    KIND_REGISTERED,
    KIND_VISITOR,
    PRE_EXISTING_SHARE,
    PREHISTORY_DAYS,
    SPILL_LINES,
    STREAM_ARRIVALS,
    Catalogue,
    Customer,
    FollowUp,
    Order,
    SimContext,
    Sink,
    poisson,
    seed_for,
)
from crm360.synthetic.sim import make_entity
from crm360.synthetic.text import DAY, Clock, DayShape, day_start, money
from crm360.synthetic.world import World

# --------------------------------------------------------------------------- public API


def build_world(cfg: GeneratorConfig) -> World:
    """Simulate without writing files (the World and manifest are the same as :func:`generate`'s)."""
    return _run(cfg, None, None)


def write_world(world: World, landing: Path) -> dict:
    """Write the drops of ``world`` under ``landing``; return the manifest.

    The simulation is re-run with writing on (it is deterministic, and a World without
    records could not be written otherwise).
    """
    return _run(world.config, Path(landing), None).manifest()


def generate(landing: Path, cfg: GeneratorConfig) -> tuple[World, dict]:
    """Simulate and write every day from the first to ``cfg.end_date``; return (world, manifest)."""
    world = _run(cfg, Path(landing), None)
    return world, world.manifest()


def generate_next_day(landing: Path, cfg: GeneratorConfig) -> dict:
    """Add the day after the landing's end date: only that day's drops, and a new manifest.

    The start date comes from the existing manifest, so the result is byte for byte
    what generating the longer history directly would give. ``cfg`` must describe the
    same world (its dates are ignored).
    """
    landing = Path(landing)
    old = json.loads((landing / "manifest.json").read_text(encoding="utf-8"))
    start, end = date.fromisoformat(old["start_date"]), date.fromisoformat(old["end_date"])
    nxt = replace(cfg, start_date=start, end_date=end + timedelta(days=1))
    recorded = {k: v for k, v in old.get("config", {}).items() if k != "end_date"}
    wanted = {k: v for k, v in nxt.world_fields().items() if k != "end_date"}
    if recorded and recorded != wanted:
        differ = sorted(k for k in wanted if recorded.get(k) != wanted[k])
        raise ValueError(f"{landing} was generated with another configuration ({', '.join(differ)} differ)")
    return _run(nxt, landing, nxt.end_date).manifest()


def count_sessions(events: list[dict], gap: timedelta = timedelta(minutes=30)) -> int:
    """Sessions per visitor: a new one starts after more than ``gap`` without events."""
    by_visitor: dict[str, list[datetime]] = {}
    for e in events:
        by_visitor.setdefault(e["visitor_id"], []).append(datetime.fromisoformat(e["occurred_at"]))
    total = 0
    for moments in by_visitor.values():
        moments.sort()
        total += 1 + sum(1 for a, b in zip(moments, moments[1:], strict=False) if b - a > gap)
    return total


# --------------------------------------------------------------------------- the run


def _arrivals(cfg: GeneratorConfig, n_days: int) -> list[tuple[int, int, list[int]]]:
    """Per kind: (kind, index of the first arrival, arrivals per day), each day on its own seed.

    Rates come from the counts per configured ``days``; registered customers are
    enumerated ``PREHISTORY_DAYS`` beyond the end because they may browse before registering.
    """
    plan = []
    pre = round(cfg.customers * PRE_EXISTING_SHARE)
    rates = {KIND_REGISTERED: cfg.customers * (1 - PRE_EXISTING_SHARE) / cfg.days,
             KIND_GUEST: cfg.guest_persons / cfg.days, KIND_PROSPECT: cfg.prospects / cfg.days,
             KIND_VISITOR: cfg.anonymous_visitors / cfg.days}
    for kind, rate in rates.items():
        days = n_days + (PREHISTORY_DAYS if kind == KIND_REGISTERED else 0)
        per_day = [poisson(random.Random(seed_for(cfg.seed, STREAM_ARRIVALS, kind, d)), rate) for d in range(days)]
        plan.append((kind, pre if kind == KIND_REGISTERED else 0, per_day))
    return plan


def _entities(cfg: GeneratorConfig, n_days: int) -> Iterator[tuple[int, int, int | None]]:
    """Every entity as (kind, index, arrival day or None for customers existing before the start)."""
    for i in range(round(cfg.customers * PRE_EXISTING_SHARE)):
        yield KIND_REGISTERED, i, None
    for kind, first, per_day in _arrivals(cfg, n_days):
        index = first
        for day, n in enumerate(per_day):
            for _ in range(n):
                yield kind, index, day
                index += 1


@dataclass
class _Job:
    cfg: GeneratorConfig
    n_days: int
    write: bool
    only_day: int | None
    keep: bool
    part: int
    parts: int
    spool: str | None


def _context(cfg: GeneratorConfig, n_days: int, sink: Sink) -> SimContext:
    start_ts = day_start(cfg.first_day)
    shape = DayShape()
    catalogue = Catalogue(cfg.seed, cfg.products, start_ts, start_ts + n_days * DAY, shape)
    return SimContext(cfg, start_ts, n_days, catalogue, sink, Clock(), shape, cfg.first_day.year)


def _work(job: _Job, bar: tqdm | None = None) -> Sink:
    """Simulate this part's share of entities (every ``parts``-th); spill lines beyond memory to the spool."""
    sink = Sink(job.n_days, job.write, job.only_day, job.keep)
    ctx = _context(job.cfg, job.n_days, sink)
    if job.part == 0:
        _put_products(ctx)
    done = 0
    for position, (kind, index, arrival) in enumerate(_entities(job.cfg, job.n_days)):
        if position % job.parts != job.part:
            continue
        make_entity(ctx, kind, index, arrival).run()
        done += 1
        if sink.buffered > SPILL_LINES and job.spool:
            _spill(sink, Path(job.spool) / str(job.part))
        if done % 500 == 0:
            parallel.advance(bar, 500)
    if bar is not None:
        bar.update(done % 500)
    if job.parts > 1 and job.spool:
        _spill(sink, Path(job.spool) / str(job.part))
    return sink


def _put_products(ctx: SimContext) -> None:
    cat, sink = ctx.catalogue, ctx.sink
    for i, pid in enumerate(cat.ids):
        sink.put("p", 0, f"{ctx.start_ts:010d}{pid}", _product_line(cat, i, cat.base[i]))
        for wall, price in cat.changes[i]:
            sink.put("p", (wall - ctx.start_ts) // DAY, f"{wall:010d}{pid}", _product_line(cat, i, price))


def _product_line(cat: Catalogue, i: int, price: int) -> str:
    return f"{cat.ids[i]},{cat.names[i]},{CATEGORIES[cat.categories[i]]},{money(price)}"


def _spill(sink: Sink, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for day, lines in sink.lines.items():
        with open(folder / f"{day:05d}.txt", "a", encoding="utf-8", newline="\n") as fh:
            fh.write("\n".join(lines))
            fh.write("\n")
    sink.lines = {}
    sink.buffered = 0


def _run(cfg: GeneratorConfig, landing: Path | None, only_day: date | None) -> World:
    start, end = cfg.first_day, cfg.end_date
    if end < start:
        raise ValueError(f"end date {end} is before start date {start}")
    n_days = (end - start).days + 1
    keep = cfg.keep_records if cfg.keep_records is not None else cfg.customers <= KEEP_RECORDS_UP_TO
    write = landing is not None
    only = (only_day - start).days if only_day is not None else None
    parts = max(1, cfg.workers)
    spool = None
    if write:
        landing.mkdir(parents=True, exist_ok=True)
        spool = landing / f".generate-spool-{random.SystemRandom().getrandbits(40):010x}"
    total = sum(1 for _ in _entities(cfg, n_days)) if parallel.show_progress(cfg.progress) else 0
    try:
        with tqdm(total=total, disable=not parallel.show_progress(cfg.progress), unit="people", desc="simulating",
                  mininterval=0.5) as bar:
            jobs = [_Job(cfg, n_days, write, only, keep, p, parts, str(spool) if spool else None)
                    for p in range(parts)]
            if parts == 1:
                sinks = [_work(jobs[0], bar)]
            else:
                sinks = _work_in_processes(jobs, bar)
        world = _merge(cfg, n_days, sinks, keep)
        if write:
            write_days(cfg, landing, n_days, only, sinks, spool)
            (landing / "manifest.json").write_text(json.dumps(world.manifest(), indent=2, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
    finally:
        if spool is not None and spool.exists():
            shutil.rmtree(spool)
    return world


def _work_in_processes(jobs: list[_Job], bar: tqdm) -> list[Sink]:
    counter = parallel.new_counter()
    with parallel.pool(len(jobs), counter) as pool:
        return parallel.results_in_order([pool.submit(_work, job) for job in jobs], bar, counter)


def _merge(cfg: GeneratorConfig, n_days: int, sinks: list[Sink], keep: bool) -> World:
    """One World from the parts: sums, unions, and records sorted so the order never depends on the split."""
    start = cfg.first_day
    world = World(config=cfg, start_date=start, end_date=cfg.end_date, keep_records=keep)
    ctx = _context(cfg, n_days, Sink(n_days, False, None, False))
    cat = ctx.catalogue
    world.products = [{"product_id": pid, "product_name": cat.names[i], "category": CATEGORIES[cat.categories[i]],
                       "list_price": money(cat.base[i])} for i, pid in enumerate(cat.ids)]
    world.bundles = list(cat.bundles)
    world.counts = {k: [sum(s.counts[k][d] for s in sinks) for d in range(n_days)] for k in FILE_KINDS}
    world.totals = {k: sum(s.totals[k] for s in sinks) for k in sinks[0].totals}
    world.dirt = {k: sum(s.dirt[k] for s in sinks) for k in sinks[0].dirt}
    world.churn_exposure = {g: [sum(s.churn_exposure[g][0] for s in sinks),
                                round(sum(s.churn_exposure[g][1] for s in sinks), 3)] for g in sinks[0].churn_exposure}
    world.follow_up_spend = {g: [sum(s.follow_up_spend[g][i] for s in sinks) for i in range(3)]
                             for g in sinks[0].follow_up_spend}
    world.malformed = malformed_manifest(cfg, start, world.counts)
    if keep:
        for s in sinks:
            world.customers += s.customers
            world.orders += s.orders
            world.tickets += list(s.tickets.values())
            world.prospect_emails |= s.prospect_emails
            world.anonymous_visitors |= s.anonymous_visitors
            world.primary_ids.update(s.primary)
            world.lifecycle.update(s.lifecycle)
            world.follow_ups.update(s.follow_ups)
            world.converted_visitors.update(s.converted_visitors)
            world._revenue.update(s.revenue)
            world._last_purchase.update(s.last_purchase)
        world.customers.sort(key=lambda c: (c.created_at.astimezone(UTC), c.customer_id))
        world.orders.sort(key=lambda o: (o.ordered_at.astimezone(UTC), o.order_id))
        world.tickets.sort(key=lambda t: (t["created_at"], t["id"]))
        events = sorted(e for s in sinks for e in s.events)
        world._event_lines = [line for _, _, line in events]
        world.event_drop_days = [start + timedelta(days=day) for day, _, _ in events]
    return world


__all__ = ["PRESETS", "Customer", "FollowUp", "GeneratorConfig", "Order", "World", "build_world", "count_sessions",
           "generate", "generate_next_day", "write_world"]
