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
``crm360/synthetic/sim.py`` holds the behaviour, ``crm360/synthetic/text.py`` the spelling.

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

import csv
import io
import json
import multiprocessing
import random
import shutil
import sys
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from tqdm import tqdm

from crm360.synthetic.sim import (
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
    STREAM_MALFORMED,
    Catalogue,
    Customer,
    FollowUp,
    Order,
    SimContext,
    Sink,
    make_entity,
    poisson,
    seed_for,
)
from crm360.synthetic.text import (
    CUSTOMER_COLUMNS,
    DAY,
    LINE_COLUMNS,
    ORDER_COLUMNS,
    PRODUCT_COLUMNS,
    Clock,
    DayShape,
    day_start,
    money,
)

DEFAULT_END_DATE = date(2026, 10, 31)

# What each preset holds (seed 42, default rates; measured on a 2-core machine):
#   tiny    ~200 registered customers (~260 shop persons with guest-only buyers), ~650 orders,
#           ~9k web events, 120 days, < 1 s; tests
#   small   ~2,000 registered (~2,500 shop persons), ~12k orders, ~125k web events, 180 days, ~4 s; CI
#   medium  ~100k registered (~120k shop persons, ~183k shop customer ids with guest records),
#           ~1.0M orders, ~1.8M order lines, ~10.3M web events, ~84k tickets, 365 days,
#           ~2 GB of files, ~1.5-2 minutes with 2 workers, ~140 MB peak memory
#   large   ~1M registered and ten times medium in everything else: ~10M orders, ~100M web
#           events, ~20 GB of files (and ~25 GB of spool while writing), ~23 minutes with 2 workers, ~400 MB memory
PRESETS: dict[str, dict[str, Any]] = {
    # registered customers and people who only check out as guests, prospects and anonymous
    # visitors arriving over `days`; the larger presets run on two processes
    "tiny": dict(customers=200, days=120, products=40, prospects=60, anonymous_visitors=150, guest_persons=40),
    "small": dict(customers=2_000, days=180, products=200, prospects=600, anonymous_visitors=1_500,
                  guest_persons=400),
    "medium": dict(customers=100_000, days=365, products=2_000, prospects=30_000, anonymous_visitors=150_000,
                   guest_persons=20_000, workers=2),
    "large": dict(customers=1_000_000, days=365, products=10_000, prospects=300_000,
                  anonymous_visitors=1_500_000, guest_persons=200_000, workers=2),
}

KEEP_RECORDS_UP_TO = 20_000  # keep_records=None keeps full records for configurations up to this many customers

MALFORMED_FILES = {"c": "customers.csv", "o": "orders.csv", "l": "order_lines.csv", "e": "events"}

# the config fields that only say how to run, not what the world is
_RUN_FIELDS = ("keep_records", "progress", "workers")


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. ``customers``/``days`` (and the other counts) set arrival *rates*, the dates the calendar.

    The history runs from ``start_date`` (default: ``days`` back from ``end_date``) to
    ``end_date``. Extending ``end_date`` with a fixed ``start_date`` (and the other fields
    unchanged) extends the same world: earlier drops stay byte-identical.
    """

    customers: int = 2_000  # registered customers by the end of `days` (35 % exist before the start)
    days: int = 180
    products: int = 200
    prospects: int = 600  # people leaving an e-mail (newsletter, service) who never buy, per `days`
    anonymous_visitors: int = 1_500  # visitors who never identify, per `days`
    guest_persons: int = 400  # people who only ever check out as guests, per `days`
    seed: int = 42
    end_date: date = DEFAULT_END_DATE
    start_date: date | None = None
    # behaviour
    orders_per_customer_year: float = 22.0  # for an average active, buying customer (before Pareto weights)
    sessions_per_customer_year: float = 24.0  # browsing sessions, besides the sessions that place web orders
    follow_up_call_rate: float = 0.2  # share of existing customers called on their follow-up date
    guest_checkout_rate: float = 0.06  # share of registered customers' web orders checked out as guest
    return_rate: float = 0.05  # completed orders later returned in full
    partial_return_rate: float = 0.05  # completed orders later partly refunded
    # dirt
    duplicate_customer_rate: float = 0.01  # customers.csv rows written twice
    duplicate_order_rate: float = 0.01  # orders.csv rows written twice
    duplicate_event_rate: float = 0.005  # web events delivered twice (same event_id)
    messy_email_rate: float = 0.1  # e-mails typed with odd case or surrounding spaces (all sources)
    phone_format_rate: float = 0.4  # phones not in the canonical "+49 30 1234567" spelling
    placeholder_phone_rate: float = 0.03  # "0000000000", "+49 000 000000", "n/a", "123456"
    late_event_rate: float = 0.01  # web events written to the next day's file or the one after
    offset_rate: float = 0.3  # timestamps written as +01:00, +02:00, -05:00 or Z instead of +00:00
    malformed_rate: float = 0.001  # malformed records per valid record, in files that may hold them
    malformed_every: int = 500  # ... files of at least this many records, at most one per this many
    shared_mailbox_rate: float = 0.02  # guest-only people using a shared address (info@, family@ ...)
    # running (no effect on the output)
    keep_records: bool | None = None  # full records in the World; None: only up to KEEP_RECORDS_UP_TO customers
    progress: bool | None = None  # tqdm bar; None: only on a terminal
    workers: int = 1  # processes simulating people (output identical for any number)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GeneratorConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}})

    @property
    def first_day(self) -> date:
        return self.start_date or self.end_date - timedelta(days=self.days - 1)

    def world_fields(self) -> dict[str, Any]:
        """The fields that define the world, as the manifest records them (start date resolved)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in _RUN_FIELDS:
                continue
            value = self.first_day if f.name == "start_date" else getattr(self, f.name)
            out[f.name] = value.isoformat() if isinstance(value, date) else value
        return out


@dataclass
class World:
    """What was generated: always the totals the manifest needs; full records only with ``keep_records``.

    Person-keyed results use the person's *primary* shop customer id: their registered
    account's id if they have one, else the id of their earliest guest record.
    """

    config: GeneratorConfig
    start_date: date
    end_date: date
    totals: dict[str, int] = field(default_factory=dict)
    counts: dict[str, list[int]] = field(default_factory=dict)  # valid records per file kind and day
    dirt: dict[str, int] = field(default_factory=dict)
    malformed: list[dict] = field(default_factory=list)
    churn_exposure: dict[str, list] = field(default_factory=dict)  # {group: [churns, active days]}
    follow_up_spend: dict[str, list[int]] = field(default_factory=dict)  # {group: [before, after, customers]}
    products: list[dict] = field(default_factory=list)
    bundles: list[tuple[str, str]] = field(default_factory=list)
    keep_records: bool = False
    customers: list[Customer] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    tickets: list[dict] = field(default_factory=list)
    event_drop_days: list[date] = field(default_factory=list)  # the file each of `events` is in
    _event_lines: list[str] = field(default_factory=list, repr=False)
    _events: list[dict] | None = field(default=None, repr=False)
    prospect_emails: set[str] = field(default_factory=set)
    anonymous_visitors: set[str] = field(default_factory=set)
    primary_ids: dict[str, str] = field(default_factory=dict)  # any shop customer id -> the person's primary id
    lifecycle: dict[str, list[tuple[date, str]]] = field(default_factory=dict)
    follow_ups: dict[str, FollowUp] = field(default_factory=dict)
    converted_visitors: dict[str, str] = field(default_factory=dict)  # anonymous first, later identified buyers
    _revenue: dict[str, int] = field(default_factory=dict)
    _last_purchase: dict[str, date] = field(default_factory=dict)

    @property
    def events(self) -> list[dict]:
        """Every valid web event line in the files (duplicates included), in file order; parsed on first use."""
        self._need_records()
        if self._events is None:
            self._events = [json.loads(line) for line in self._event_lines]
        return self._events

    def _need_records(self) -> None:
        if not self.keep_records:
            raise RuntimeError("this World was built without keep_records; generate with keep_records=True")

    def revenue_by_customer(self) -> dict[str, int]:
        """Net revenue in cents per person (primary shop customer id), for persons with any."""
        self._need_records()
        return {k: v for k, v in self._revenue.items() if v > 0}

    def last_purchase_by_customer(self) -> dict[str, date]:
        """UTC date of each person's last purchase (completed or partially returned order)."""
        self._need_records()
        return dict(self._last_purchase)

    @property
    def shop_persons(self) -> set[str]:
        """Primary shop customer ids: one per person with a shop record."""
        self._need_records()
        return set(self.primary_ids.values())

    def manifest(self) -> dict:
        t = self.totals
        people = t["shop_customers"] + t["prospects"] + t["anonymous_visitors"]
        dirt = {**self.dirt, "malformed": len(self.malformed)}
        return {
            "start_date": self.start_date.isoformat(),
            "end_date": self.end_date.isoformat(),
            "config": self.config.world_fields(),
            "shop_customer_ids": t["shop_customer_ids"],
            "registered_customers": t["shop_customer_ids"] - t["guest_records"],
            "guest_records": t["guest_records"],
            "shop_customers": t["shop_customers"],
            "prospects": t["prospects"],
            "anonymous_visitors": t["anonymous_visitors"],
            "people": people,
            "buyers": t["buyers"],
            "orders": t["orders"],
            "order_rows": sum(self.counts["o"]),
            "purchases": t["purchases"],
            "completed_orders": t["completed_orders"],
            "partially_returned_orders": t["partially_returned_orders"],
            "returned_orders": t["returned_orders"],
            "cancelled_orders": t["cancelled_orders"],
            "order_lines": sum(self.counts["l"]),
            "customer_rows": sum(self.counts["c"]),
            "products": len(self.products),
            "product_rows": sum(self.counts["p"]),
            "revenue": f"{t['revenue_cents'] // 100}.{t['revenue_cents'] % 100:02d}",
            "tickets": t["tickets"],
            "ticket_rows": sum(self.counts["t"]),
            "complaints": t["complaints"],
            "follow_up_calls": t["follow_up_calls"],
            "web_events": sum(self.counts["e"]),
            "web_event_ids": t["web_event_ids"],
            "web_sessions": t["web_sessions"],
            "malformed": self.malformed,
            "dirt": dirt,
        }


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


_progress_counter: Any = None


def _init_worker(counter: Any) -> None:
    global _progress_counter
    _progress_counter = counter


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
            if bar is not None:
                bar.update(500)
            elif _progress_counter is not None:
                with _progress_counter.get_lock():
                    _progress_counter.value += 500
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


def _show_progress(cfg: GeneratorConfig) -> bool:
    if cfg.progress is not None:
        return cfg.progress
    return sys.stderr.isatty()


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
    total = sum(1 for _ in _entities(cfg, n_days)) if _show_progress(cfg) else 0
    try:
        with tqdm(total=total, disable=not _show_progress(cfg), unit="people", desc="simulating",
                  mininterval=0.5) as bar:
            jobs = [_Job(cfg, n_days, write, only, keep, p, parts, str(spool) if spool else None)
                    for p in range(parts)]
            if parts == 1:
                sinks = [_work(jobs[0], bar)]
            else:
                sinks = _work_in_processes(jobs, bar)
        world = _merge(cfg, n_days, sinks, keep)
        if write:
            _write_days(cfg, landing, n_days, only, sinks, spool)
            (landing / "manifest.json").write_text(json.dumps(world.manifest(), indent=2, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
    finally:
        if spool is not None and spool.exists():
            shutil.rmtree(spool)
    return world


def _mp() -> Any:
    """Fork where there is fork (workers start instantly); spawn elsewhere, which works as everything is picklable."""
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def _pool(parts: int, counter: Any) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(parts, mp_context=_mp(), initializer=_init_worker, initargs=(counter,))


def _wait(futures: list, bar: tqdm, counter: Any) -> list:
    """Results of ``futures`` in submission order, moving the bar as the workers report progress."""
    pending = set(futures)
    while pending:
        _, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
        bar.update(counter.value - bar.n)
    return [f.result() for f in futures]


def _work_in_processes(jobs: list[_Job], bar: tqdm) -> list[Sink]:
    counter = _mp().Value("q", 0)
    with _pool(len(jobs), counter) as pool:
        return _wait([pool.submit(_work, job) for job in jobs], bar, counter)


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
    world.malformed = _malformed_manifest(cfg, start, world.counts)
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


# --------------------------------------------------------------------------- malformed records


def _malformed_plan(cfg: GeneratorConfig, day: date, kind: str, n: int) -> list[tuple[int, str, float]]:
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


def _malformed_manifest(cfg: GeneratorConfig, start: date, counts: dict[str, list[int]]) -> list[dict]:
    out = []
    for kind in MALFORMED_FILES:
        for d, n in enumerate(counts[kind]):
            day = start + timedelta(days=d)
            header = 0 if kind == "e" else 1
            for i, (after, name, _) in enumerate(_malformed_plan(cfg, day, kind, n)):
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


def _corrupt(kind: str, payload: str, name: str, variant: float) -> bytes:
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


# --------------------------------------------------------------------------- files


def _day_lines(day: int, sinks: list[Sink], spool: Path | None, parts: int) -> list[str]:
    lines: list[str] = []
    for s in sinks:
        lines += s.lines.get(day, [])
    if spool is not None:
        for part in range(parts):
            path = spool / str(part) / f"{day:05d}.txt"
            if path.exists():
                lines += path.read_text(encoding="utf-8").splitlines()
                path.unlink()  # the day is about to be written: keep peak disk use near one copy
    lines.sort()
    return lines


def _write_days(cfg: GeneratorConfig, landing: Path, n_days: int, only: int | None, sinks: list[Sink],
                spool: Path | None) -> None:
    """Sort each day's records into its files; days are independent, so workers share them out."""
    days = [only] if only is not None else list(range(n_days))
    parts = max(1, cfg.workers)
    with tqdm(total=len(days), disable=not _show_progress(cfg) or len(days) < 2, unit="day",
              desc="writing", mininterval=0.5) as bar:
        if parts == 1 or len(days) < 2 or any(s.lines for s in sinks):
            _write_some_days(cfg, landing, days, sinks, spool, bar)
            return
        counter = _mp().Value("q", 0)
        with _pool(parts, counter) as pool:
            _wait([pool.submit(_write_some_days, cfg, landing, days[p::parts], [], spool) for p in range(parts)],
                  bar, counter)


def _write_some_days(cfg: GeneratorConfig, landing: Path, days: list[int], sinks: list[Sink], spool: Path | None,
                     bar: tqdm | None = None) -> None:
    start = cfg.first_day
    for d in days:
        day = start + timedelta(days=d)
        by_kind: dict[str, list[str]] = {k: [] for k in FILE_KINDS}
        for line in _day_lines(d, sinks, spool, max(1, cfg.workers)):
            by_kind[line[0]].append(line[line.index("\t") + 1:])
        sales = landing / "sales" / day.isoformat()
        sales.mkdir(parents=True, exist_ok=True)
        if by_kind["p"]:
            _write_file(sales / "products.csv", PRODUCT_COLUMNS, by_kind["p"], [], "p")
        for kind, name, columns in (("c", "customers.csv", CUSTOMER_COLUMNS), ("o", "orders.csv", ORDER_COLUMNS),
                                    ("l", "order_lines.csv", LINE_COLUMNS)):
            plan = _malformed_plan(cfg, day, kind, len(by_kind[kind]))
            _write_file(sales / name, columns, by_kind[kind], plan, kind)
        service = landing / "service"
        service.mkdir(parents=True, exist_ok=True)
        tickets = by_kind["t"]
        body = ",\n".join(tickets)
        text = (f'{{"exported_at": "{day.isoformat()}T23:59:59+00:00", "tickets": [\n{body}\n]}}\n' if tickets
                else f'{{"exported_at": "{day.isoformat()}T23:59:59+00:00", "tickets": []}}\n')
        (service / f"tickets_{day.isoformat()}.json").write_text(text, encoding="utf-8")
        web = landing / "web"
        web.mkdir(parents=True, exist_ok=True)
        plan = _malformed_plan(cfg, day, "e", len(by_kind["e"]))
        _write_file(web / f"events_{day.isoformat()}.jsonl", None, by_kind["e"], plan, "e")
        if bar is not None:
            bar.update(1)
        elif _progress_counter is not None:
            with _progress_counter.get_lock():
                _progress_counter.value += 1


def _write_file(path: Path, columns: tuple[str, ...] | None, payloads: list[str],
                plan: list[tuple[int, str, float]], kind: str) -> None:
    """Valid records in order, with the planned malformed records after their neighbours."""
    out: list[bytes] = [",".join(columns).encode("utf-8")] if columns else []
    if not plan:
        out += [p.encode("utf-8") for p in payloads]
    else:
        k = 0
        for r, payload in enumerate(payloads, start=1):
            out.append(payload.encode("utf-8"))
            while k < len(plan) and plan[k][0] == r:
                out.append(_corrupt(kind, payload, plan[k][1], plan[k][2]))
                k += 1
    with open(path, "wb") as fh:
        if out:
            fh.write(b"\n".join(out))
            fh.write(b"\n")


__all__ = ["PRESETS", "Customer", "FollowUp", "GeneratorConfig", "Order", "World", "build_world", "count_sessions",
           "generate", "generate_next_day", "write_world"]
