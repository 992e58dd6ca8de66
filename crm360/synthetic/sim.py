"""The simulated customer base, one person at a time.

Every person (a registered customer, a guest-only buyer, a prospect, an anonymous
visitor) is an *entity* with its own random streams seeded from (seed, kind, index).
Its life is a small discrete-event simulation: a heap of timed events processed in
time order until the end of the generated history. Nothing an entity does depends on
the end date except where it stops, so a longer history is a strict extension of a
shorter one — that is what makes next-day increments byte-identical to a direct run.

Two random streams per entity keep the world apart from its spelling: ``rng`` decides
what happens (orders, churn, tickets), ``dirt`` decides how the exports write it
(offsets, messy e-mails, phone formats, duplicates, late events). Changing a dirt rate
therefore never changes revenue, customers or sessions.

Records are handed to a :class:`Sink` with the day file they belong to; the sink drops
what falls outside the history and counts what it keeps, so every total in the manifest
is a count of what the files actually hold.
"""

from __future__ import annotations

import heapq
import json
import math
import random
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from crm360.synthetic.text import (
    COUNTRIES,
    COUNTRY_WEIGHTS,
    DAY,
    FEMALE_NAMES,
    LAST_NAMES,
    MALE_NAMES,
    PHONE_STYLES,
    Clock,
    Country,
    DayShape,
    code40,
    csv_line,
    mailbox,
    messy_email,
    mix64,
    money,
    permute40,
    pick_offset,
    placeholder_phone,
    render_phone,
    to_date,
)

KIND_REGISTERED, KIND_GUEST, KIND_PROSPECT, KIND_VISITOR = 0, 1, 2, 3
STREAM_LIFE, STREAM_DIRT, STREAM_ARRIVALS, STREAM_PRODUCTS, STREAM_MALFORMED = 1, 2, 3, 4, 5
_KEY_GUEST, _KEY_ORDER, _KEY_TICKET, _KEY_VISITOR = 11, 23, 37, 53

FILE_KINDS = "celopt"  # customers, events, order lines, orders, products, tickets (sort order of spool lines)
PURCHASE_STATUSES = ("completed", "partially_returned")

CATEGORIES = ("electronics", "home", "garden", "toys", "books", "fashion", "sports", "beauty")
_NOUNS = {
    "electronics": ("Headphones", "Charger", "Speaker", "Webcam", "Keyboard", "E-Reader", "Smartwatch"),
    "home": ("Lamp", "Kettle", "Throw", "Vase", "Pan Set", "Knife Block", "Cushion"),
    "garden": ("Hose", "Planter", "Shears", "Seed Kit", "Lantern", "Bird Feeder", "Gloves"),
    "toys": ("Puzzle", "Building Set", "Plush Bear", "Board Game", "Kite", "Train Set", "Yo-Yo"),
    "books": ("Cookbook", "Novel", "Atlas", "Biography", "Field Guide", "Poetry Collection", "Comic"),
    "fashion": ("Scarf", "Sneakers", "Jacket", "Belt", "Beanie", "Sunglasses", "Backpack"),
    "sports": ("Yoga Mat", "Dumbbells", "Bottle", "Tennis Racket", "Running Shorts", "Helmet", "Jump Rope"),
    "beauty": ("Face Cream", "Shampoo", "Perfume", "Lip Balm", "Brush Set", "Soap Trio", "Sun Lotion"),
}
_ADJECTIVES = ("Classic", "Compact", "Deluxe", "Eco", "Nordic", "Urban", "Vintage", "Pro", "Soft", "Bright")

INCOME_BANDS = ("low", "lower_middle", "middle", "upper_middle", "high")
_PRICE_TASTE = (-0.45, -0.2, 0.0, 0.25, 0.5)  # exponent on relative price: richer people buy dearer items
_INCOME_FREQUENCY = (0.85, 0.95, 1.0, 1.08, 1.15)
OCCUPATIONS = ("employee", "manager", "self_employed", "civil_servant", "student", "retired", "homemaker",
               "unemployed")
CHANNELS = ("organic_search", "paid_search", "social", "newsletter", "referral", "affiliate", "store", "direct")
_CHANNEL_WEIGHTS = (24, 18, 14, 8, 8, 6, 12, 10)
_CHANNEL_CHURN = (1.0, 1.25, 1.15, 0.9, 0.8, 1.35, 0.85, 0.95)  # bought traffic churns faster
_COUNTRY_FREQUENCY = {"DE": 1.1, "FR": 0.95, "NL": 1.05, "AT": 1.0, "IT": 0.9, "PL": 0.85}
_EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com", "post.example.net",
                  "inbox.example.org")
_SHARED_MAILBOXES = ("info@office.example.com", "noreply@shop.example.net", "family@home.example.org")

_PAGES = ("/", "/offers", "/help", "/blog/gift-ideas", "/blog/care-guide", "/about", "/delivery")
_ENTRY_WEIGHTS = (34, 14, 6, 4, 8, 5, 8, 10, 5, 6)
_ENTRY = (  # a session's first event: where the visitor came from
    "",
    ', "referrer": "https://www.google.com/"',
    ', "referrer": "https://www.bing.com/"',
    ', "referrer": "https://duckduckgo.com/"',
    ', "referrer": "https://www.instagram.com/"',
    ', "referrer": "https://www.facebook.com/"',
    ', "utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "weekly"',
    ', "utm_source": "google", "utm_medium": "cpc", "utm_campaign": "brand"',
    ', "referrer": "https://blog.example.net/best-buys"',
    ', "utm_source": "affiliate", "utm_medium": "referral", "utm_campaign": "partner"',
)
_ENTRY_CUM = tuple(sum(_ENTRY_WEIGHTS[: i + 1]) for i in range(len(_ENTRY_WEIGHTS)))

# behaviour (per year unless said otherwise)
PRE_EXISTING_SHARE = 0.35  # registered customers who already exist when the history starts
PREHISTORY_DAYS = 60  # how long before registering someone may browse (and sign up) anonymously
W_MEAN = 3.49  # mean of min(pareto(1.16), 60): order frequency weights are relative to it
LIFETIME_DAYS = 420.0  # mean time a customer stays active before lapsing
WINBACK_SHARE = 0.4  # churned customers who come back on their own
COMPLAINT_HAZARD = 2.5  # a complaint multiplies the churn hazard
CALL_RATE_BOOST = 1.8  # a reached follow-up call multiplies the order rate ...
CALL_EFFECT_DAYS = 150  # ... for this long
CALL_WINDOW_DAYS = 45  # spend compared before/after a follow-up (candidate) date
SPILL_LINES = 400_000  # spool buffered lines to disk beyond this many


def seed_for(seed: int, stream: int, kind: int, index: int) -> int:
    """The integer that seeds one random stream of one entity (or one day, one product)."""
    return ((seed & 0xFFFF_FFFF_FFFF) << 80) | (stream << 72) | (kind << 64) | index


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:  # normal approximation keeps big counts cheap to draw
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    threshold, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= threshold:
            return k
        k += 1


# --------------------------------------------------------------------------- public record types


@dataclass
class Customer:
    """A shop customer record (registered account or guest checkout) as its latest row says."""

    customer_id: str
    account_type: str
    person: str  # the person's primary shop customer id
    first_name: str
    last_name: str
    email: str
    phone: str
    gender: str
    birth_year: str
    income_band: str
    occupation: str
    city: str
    region: str
    country_code: str
    acquisition_channel: str
    marketing_consent: str
    created_at: datetime
    updated_at: datetime


@dataclass
class Order:
    """An order in its final state as of the end date."""

    order_id: str
    customer_id: str
    person: str
    ordered_at: datetime
    status: str
    channel: str
    lines: list[tuple[str, int, int]]  # product_id, quantity, unit price in cents
    refund_cents: int
    updated_at: datetime

    @property
    def amount_cents(self) -> int:
        return sum(q * p for _, q, p in self.lines)

    @property
    def net_cents(self) -> int:
        """Net revenue: cancelled and fully returned orders count nothing."""
        if self.status not in PURCHASE_STATUSES:
            return 0
        return self.amount_cents - self.refund_cents


@dataclass
class FollowUp:
    """A registered customer's follow-up date: called or not (chosen at random), and spend around it."""

    on: date
    group: str  # reached | no_answer | not_called
    before_cents: int
    after_cents: int


# --------------------------------------------------------------------------- catalogue


class Catalogue:
    """Products, their price history and the strong pairs that are bought together."""

    def __init__(self, seed: int, n_products: int, start_ts: int, horizon: int, shape: DayShape) -> None:
        rng = random.Random(seed_for(seed, STREAM_PRODUCTS, 0, 0))
        self.ids: list[str] = []
        self.names: list[str] = []
        self.categories: list[int] = []
        self.base: list[int] = []
        popularity: list[float] = []
        for i in range(n_products):
            cat = rng.randrange(len(CATEGORIES))
            self.ids.append(f"P{i + 1:05d}")
            self.names.append(f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS[CATEGORIES[cat]])}")
            self.categories.append(cat)
            self.base.append(max(199, int(rng.lognormvariate(3.1, 0.85)) * 100 + 99))
            popularity.append(1.0 / (i + 1) ** 0.85)
        median = sorted(self.base)[len(self.base) // 2]
        # cumulative choice weights per income band, over all products and per category
        self.cum: list[list[float]] = []
        self.cum_cat: list[list[tuple[list[float], list[int]]]] = []
        for taste in _PRICE_TASTE:
            weights = [pop * (price / median) ** taste for pop, price in zip(popularity, self.base, strict=True)]
            self.cum.append(_cumulate(weights))
            per_cat = []
            for cat in range(len(CATEGORIES)):
                members = [i for i in range(n_products) if self.categories[i] == cat] or list(range(n_products))
                per_cat.append((_cumulate([weights[i] for i in members]), members))
            self.cum_cat.append(per_cat)
        # strong pairs among mid-popularity products: bought together far more often than chance
        self.partner: dict[int, tuple[int, float]] = {}
        self.bundles: list[tuple[str, str]] = []
        pool = list(range(min(4, n_products // 4), max(2, n_products // 2)))
        rng.shuffle(pool)
        for k in range(max(3, n_products // 25)):
            if 2 * k + 1 >= len(pool):
                break
            a, b = sorted((pool[2 * k], pool[2 * k + 1]))
            self.partner[a] = (b, 0.55)
            self.partner[b] = (a, 0.3)
            self.bundles.append((self.ids[a], self.ids[b]))
        # price changes: each product on its own clock, independent of where the history ends
        self.changes: list[list[tuple[int, int]]] = []
        for i in range(n_products):
            prng = random.Random(seed_for(seed, STREAM_PRODUCTS, 1, i))
            history: list[tuple[int, int]] = []
            t, price = float(start_ts), self.base[i]
            while True:
                t += prng.expovariate(1 / (220 * DAY))
                if t >= horizon:
                    break
                price = max(199, int(price * prng.uniform(0.85, 1.2)) // 100 * 100 + 99)
                history.append((shape.wall(t), price))
            self.changes.append(history)

    def price_at(self, product: int, wall: int) -> int:
        price = self.base[product]
        for when, new in self.changes[product]:
            if when > wall:
                break
            price = new
        return price

    def pick(self, rng: random.Random, band: int, category: int | None) -> int:
        if category is None:
            cum = self.cum[band]
            return bisect_right(cum, rng.random() * cum[-1])
        cum, members = self.cum_cat[band][category]
        return members[min(len(members) - 1, bisect_right(cum, rng.random() * cum[-1]))]


def _cumulate(weights: list[float]) -> list[float]:
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


# --------------------------------------------------------------------------- sink


class Sink:
    """Where entities put records: keeps what falls into the history, counts it, buffers lines to write."""

    def __init__(self, n_days: int, write: bool, only_day: int | None, keep: bool) -> None:
        self.n_days = n_days
        self.write = write
        self.only_day = only_day
        self.keep = keep
        self.lines: dict[int, list[str]] = {}
        self.buffered = 0
        self.counts: dict[str, list[int]] = {k: [0] * n_days for k in FILE_KINDS}
        self.totals: dict[str, int] = dict.fromkeys(TOTAL_KEYS, 0)
        self.dirt: dict[str, int] = dict.fromkeys(DIRT_KEYS, 0)
        self.churn_exposure = {"no_complaint": [0, 0.0], "after_complaint": [0, 0.0]}
        self.follow_up_spend = {g: [0, 0, 0] for g in ("reached", "no_answer", "not_called")}
        # records, only when asked to keep them
        self.customers: list[Customer] = []
        self.orders: list[Order] = []
        self.tickets: dict[str, dict] = {}
        self.events: list[tuple[int, str, str]] = []
        self.prospect_emails: set[str] = set()
        self.anonymous_visitors: set[str] = set()
        self.revenue: dict[str, int] = {}
        self.last_purchase: dict[str, date] = {}
        self.lifecycle: dict[str, list[tuple[date, str]]] = {}
        self.follow_ups: dict[str, FollowUp] = {}
        self.primary: dict[str, str] = {}
        self.converted_visitors: dict[str, str] = {}

    def put(self, kind: str, day: int, key: str, payload: str) -> bool:
        if day < 0 or day >= self.n_days:
            return False
        self.counts[kind][day] += 1
        if self.write and (self.only_day is None or self.only_day == day):
            bucket = self.lines.get(day)
            if bucket is None:
                bucket = self.lines[day] = []
            bucket.append(f"{kind}{key}\t{payload}")
            self.buffered += 1
        return True


TOTAL_KEYS = ("shop_customer_ids", "registered_customers", "guest_records", "shop_customers", "prospects",
              "anonymous_visitors", "buyers", "orders", "purchases", "completed_orders", "returned_orders",
              "partially_returned_orders", "cancelled_orders", "revenue_cents", "tickets", "complaints",
              "follow_up_calls", "web_event_ids", "web_sessions")
DIRT_KEYS = ("duplicate_customer_rows", "duplicate_order_rows", "duplicate_events", "late_events", "emails",
             "messy_emails", "phones", "phone_other_formats", "placeholder_phones", "timestamps",
             "offset_timestamps", "guest_records", "order_updates", "ticket_updates", "shared_mailboxes")


@dataclass
class SimContext:
    """Read-only facts every entity of one run shares."""

    cfg: Any  # GeneratorConfig (not imported: generate.py imports this module)
    start_ts: int
    n_days: int
    catalogue: Catalogue
    sink: Sink
    clock: Clock = field(default_factory=Clock)
    shape: DayShape = field(default_factory=DayShape)
    ref_year: int = 2026

    @property
    def horizon(self) -> int:
        return self.start_ts + self.n_days * DAY


# --------------------------------------------------------------------------- entities


class _Visitor:
    __slots__ = ("vid", "times", "identified", "logged_in", "anonymous_before")

    def __init__(self, vid: str) -> None:
        self.vid = vid
        self.times: list[int] = []  # wall times of this visitor's events that reached the files
        self.identified = False  # a login or sign-up reached the files
        self.logged_in = False  # the simulation: has this device logged in yet
        self.anonymous_before = False  # had events before it was first identified


class _Ticket:
    __slots__ = ("tid", "ttype", "created", "created_s", "email_s", "name", "ref", "channel", "direction",
                 "outcome", "solved", "satisfaction", "emitted")


class _Ord:
    __slots__ = ("oid", "record", "wall", "ordered_s", "status", "channel", "lines", "refund", "updated",
                 "emitted", "amount")


class _Entity:
    """Common machinery: the event heap, visitors and web sessions, tickets, e-mail spelling."""

    kind = KIND_VISITOR

    def __init__(self, ctx: SimContext, index: int) -> None:
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.index = index
        seed = ctx.cfg.seed
        self.rng = random.Random(seed_for(seed, STREAM_LIFE, self.kind, index))
        self.dirt = random.Random(seed_for(seed, STREAM_DIRT, self.kind, index))
        self.heap: list[tuple[float, int, Any, Any]] = []
        self._seq = 0
        self.visitors: list[_Visitor] = []
        self.tickets: list[_Ticket] = []
        self.n_events = 0
        self.email = ""
        self.email_emitted = False  # an e-mail of this person reached the service or web files
        self.first = self.last = ""

    # -- the event loop

    def at(self, t: float, handler: Any, arg: Any = None) -> None:
        heapq.heappush(self.heap, (t, self._seq, handler, arg))
        self._seq += 1

    def run(self) -> None:
        heap, horizon = self.heap, self.ctx.horizon
        while heap:
            t, _, handler, arg = heapq.heappop(heap)
            if t >= horizon:
                break
            handler(t, arg)
        self.finish()

    def finish(self) -> None:
        self._finish_web()

    def day(self, wall: int) -> int:
        return (wall - self.ctx.start_ts) // DAY

    def ts(self, wall: int) -> str:
        """A timestamp as the exports write it: UTC "+00:00", or (dirt) another offset or "Z"."""
        return self.ctx.clock.iso(wall, pick_offset(self.dirt.random(), self.cfg.offset_rate))

    def _count_timestamps(self, *texts: str | None) -> None:
        dirt = self.ctx.sink.dirt
        for text in texts:
            if text is not None:
                dirt["timestamps"] += 1
                if not text.endswith("+00:00"):
                    dirt["offset_timestamps"] += 1

    def email_out(self) -> str:
        """The person's e-mail as typed this time (sometimes messy)."""
        if self.dirt.random() < self.cfg.messy_email_rate:
            return messy_email(self.dirt, self.email)
        return self.email

    def _count_email(self, text: str) -> None:
        dirt = self.ctx.sink.dirt
        dirt["emails"] += 1
        if text != self.email:
            dirt["messy_emails"] += 1

    # -- web

    def visitor(self, k: int) -> _Visitor:
        while len(self.visitors) <= k:
            n = len(self.visitors)
            vid = f"v-{permute40(code40(self.kind, self.index, n), _KEY_VISITOR):010x}"
            self.visitors.append(_Visitor(vid))
        return self.visitors[k]

    def entry(self) -> str:
        cum = _ENTRY_CUM
        return _ENTRY[bisect_right(cum, self.rng.random() * cum[-1])]

    def browse_script(self, n: int, entry: str, category: int | None = None) -> list[tuple[str, str, str, int]]:
        """A browsing session: a landing page then pages, products, searches, the odd cart."""
        rng, cat = self.rng, self.ctx.catalogue
        script: list[tuple[str, str, str, int]] = [("page_view", rng.choice(_PAGES), entry, 0)]
        for _ in range(n - 1):
            u = rng.random()
            if u < 0.3:
                script.append(("page_view", f"/catalog/{CATEGORIES[rng.randrange(len(CATEGORIES))]}", "", 0))
            elif u < 0.72:
                p = cat.pick(rng, 2, category if rng.random() < 0.5 else None)
                pid = cat.ids[p]
                script.append(("product_view", f"/product/{pid}", f', "product_id": "{pid}"', 0))
            elif u < 0.85:
                script.append(("search", "/search", "", 0))
            elif u < 0.93:
                p = cat.pick(rng, 2, category)
                pid = cat.ids[p]
                script.append(("add_to_cart", f"/product/{pid}", f', "product_id": "{pid}"', 0))
            else:
                script.append(("page_view", rng.choice(_PAGES), "", 0))
        return script

    def session(self, visitor: _Visitor, start: int, script: list[tuple[str, str, str, int]]) -> int:
        """Write one session's events from wall time ``start``; returns the last event's time.

        Gaps stay under 25 minutes, so a session never splits under the 30-minute rule.
        The hottest loop of the generator (one pass per web event), hence the local names.
        """
        ctx, cfg = self.ctx, self.cfg
        sink, iso, start_ts = ctx.sink, ctx.clock.iso, ctx.start_ts
        put, keep, n_days, counts = sink.put, sink.keep, sink.n_days, sink.counts["e"]
        write, only, buffers = sink.write, sink.only_day, sink.lines
        rng_random, d, log = self.rng.random, self.dirt.random, math.log
        late_rate, dup_rate, offset_rate = cfg.late_event_rate, cfg.duplicate_event_rate, cfg.offset_rate
        vid, times = visitor.vid, visitor.times
        base = (self.kind << 62) | (self.index << 32)
        n_events = self.n_events
        late_n = dup_n = stamp_n = offset_n = 0
        t = start
        for n, (etype, page, extra, flags) in enumerate(script):
            if n:
                gap = int(-log(1.0 - rng_random()) * 70)
                t += 4 + (gap if gap < 1_500 else 1_500)
            eid = f"{mix64(base | n_events):016x}"
            n_events += 1
            u = d()
            offset = 0 if u >= offset_rate else 1 + min(3, int(u / offset_rate * 4))
            line = (f'{{"event_id": "{eid}", "visitor_id": "{vid}", "event_type": "{etype}", "page": "{page}", '
                    f'"occurred_at": "{iso(t, offset)}"{extra}}}')
            day = (t - start_ts) // DAY
            u = d()
            late = u < late_rate
            if late:
                day += 1 if u < late_rate / 2 else 2
            kept = 0 <= day < n_days
            if kept:  # Sink.put, inlined for the one record kind there are millions of
                counts[day] += 1
                if write and (only is None or only == day):
                    bucket = buffers.get(day)
                    if bucket is None:
                        bucket = buffers[day] = []
                    bucket.append(f"e{t:010d}{eid}\t{line}")
                    sink.buffered += 1
                late_n += late
                if keep:
                    sink.events.append((day, f"{t:010d}{eid}", line))
            if d() < dup_rate:  # at-least-once delivery: the same event again, now or in the next drop
                dup_day = day if d() < 0.7 else day + 1
                key = f"{t:010d}{eid}"
                if put("e", dup_day, key, line):
                    dup_n += 1
                    kept = True
                    if keep:
                        sink.events.append((dup_day, key, line))
            if kept:
                stamp_n += 1
                offset_n += offset > 0
                times.append(t)
                if flags:
                    if not visitor.identified and len(times) > 1:
                        visitor.anonymous_before = True
                    visitor.identified = True
                    if flags & 2:
                        self.email_emitted = True
                        sink.dirt["emails"] += 1
                        sink.dirt["messy_emails"] += bool(flags & 4)
        self.n_events = n_events
        dirt = sink.dirt
        dirt["late_events"] += late_n
        dirt["duplicate_events"] += dup_n
        dirt["timestamps"] += stamp_n
        dirt["offset_timestamps"] += offset_n
        return t

    def signup_extra(self) -> tuple[str, int]:
        text = self.email_out()
        return f', "email": "{text}"', 1 | 2 | (4 if text != self.email else 0)

    def _finish_web(self) -> None:
        totals, sink = self.ctx.sink.totals, self.ctx.sink
        for v in self.visitors:
            if not v.times:
                continue
            totals["web_event_ids"] += len(v.times)
            totals["web_sessions"] += _sessions(v.times)
            if not v.identified:
                totals["anonymous_visitors"] += 1
                if sink.keep:
                    sink.anonymous_visitors.add(v.vid)

    # -- service

    def open_ticket(self, t: float, ttype: str, ref: str | None, *, outcome: str | None = None) -> _Ticket:
        """A helpdesk ticket: exported the day it opens and again the day it is solved."""
        ctx, rng = self.ctx, self.rng
        seq = len(self.tickets)
        tk = _Ticket()
        tk.tid = f"T{permute40(code40(self.kind, self.index, seq), _KEY_TICKET):013d}"
        tk.ttype, tk.ref, tk.outcome = ttype, ref, outcome
        tk.created = ctx.shape.wall(t)
        tk.created_s = self.ts(tk.created)
        tk.email_s = self.email_out()
        tk.name = f"{self.first} {self.last}"
        tk.emitted = False
        if ttype == "follow_up_call":
            tk.direction, tk.channel = "outbound", "phone"
            tk.solved = tk.created + 60 + rng.randrange(900)
            tk.satisfaction = None
        else:
            tk.direction = "inbound"
            tk.channel = rng.choice(("email", "email", "phone", "chat", "web_form"))
            tk.solved = None if rng.random() < 0.07 else tk.created + 300 + int(rng.expovariate(1 / (22 * 3600)))
            tk.satisfaction = None
            if tk.solved is not None and rng.random() < 0.55:
                weights = (30, 25, 20, 15, 10) if ttype == "complaint" else (4, 7, 17, 36, 36)
                tk.satisfaction = rng.choices((1, 2, 3, 4, 5), weights)[0]
        self.tickets.append(tk)
        same_day = tk.solved is not None and self.day(tk.solved) == self.day(tk.created)
        if same_day:
            self._ticket_row(tk, "solved", tk.solved, tk.solved)
        else:
            self._ticket_row(tk, "open", tk.created, None)
            if tk.solved is not None:
                # the solved state is exported on its own day: scheduled in raw time at the same instant
                self.at(t + (tk.solved - tk.created), self._on_ticket_solved, tk)
        return tk

    def _on_ticket_solved(self, t: float, tk: _Ticket) -> None:
        if self._ticket_row(tk, "solved", tk.solved, tk.solved):
            self.ctx.sink.dirt["ticket_updates"] += 1

    def _ticket_row(self, tk: _Ticket, status: str, updated: int, solved: int | None) -> bool:
        sink = self.ctx.sink
        updated_s = self.ts(updated)
        solved_s = self.ts(solved) if solved is not None else None
        record = {"id": tk.tid, "type": tk.ttype, "status": status, "created_at": tk.created_s,
                  "updated_at": updated_s, "solved_at": solved_s,
                  "requester": {"email": tk.email_s, "name": tk.name}, "customer_ref": tk.ref,
                  "satisfaction": tk.satisfaction if status == "solved" else None, "channel": tk.channel,
                  "direction": tk.direction}
        if tk.outcome is not None:
            record["outcome"] = tk.outcome
        payload = json.dumps(record, ensure_ascii=False)
        if not sink.put("t", self.day(updated), f"{updated:010d}{tk.tid}", payload):
            return False
        tk.emitted = True
        self.email_emitted = True
        self._count_timestamps(tk.created_s, updated_s, solved_s)
        self._count_email(tk.email_s)
        if sink.keep:
            sink.tickets[tk.tid] = record
        return True

    def _finish_tickets(self) -> None:
        totals = self.ctx.sink.totals
        for tk in self.tickets:
            if tk.emitted:
                totals["tickets"] += 1
                totals["complaints"] += tk.ttype == "complaint"
                totals["follow_up_calls"] += tk.ttype == "follow_up_call"


def _sessions(times: list[int]) -> int:
    times.sort()
    return 1 + sum(1 for a, b in zip(times, times[1:], strict=False) if b - a > 1_800)


class _Anonymous(_Entity):
    """A visitor who browses and never says who they are (a suspect in the pyramid)."""

    kind = KIND_VISITOR

    def __init__(self, ctx: SimContext, index: int, arrival_day: int) -> None:
        super().__init__(ctx, index)
        rng = self.rng
        t = ctx.start_ts + (arrival_day + rng.random()) * DAY
        self.at(t)
        for _ in range(_geometric(rng, 0.45)):
            t += rng.expovariate(1 / (12 * DAY))
            self.at(t)

    def at(self, t: float, handler: Any = None, arg: Any = None) -> None:  # every event is a session
        super().at(t, handler or self._on_session, arg)

    def _on_session(self, t: float, _: Any) -> None:
        n = 1 + poisson(self.rng, 2.2)
        self.session(self.visitor(0), self.ctx.shape.wall(t), self.browse_script(n, self.entry()))


def _geometric(rng: random.Random, p_more: float) -> int:
    n = 0
    while rng.random() < p_more:
        n += 1
    return n


class _Prospect(_Entity):
    """Someone who leaves an e-mail (newsletter sign-up, a service question) and never buys."""

    kind = KIND_PROSPECT

    def __init__(self, ctx: SimContext, index: int, arrival_day: int) -> None:
        super().__init__(ctx, index)
        rng = self.rng
        pool = FEMALE_NAMES + MALE_NAMES
        self.first, self.last = rng.choice(pool), rng.choice(LAST_NAMES)
        self.email = f"{mailbox(self.first)[0]}{mailbox(self.last)}.{index + 1}@{rng.choice(_EMAIL_DOMAINS)}"
        t0 = ctx.start_ts + (arrival_day + rng.random()) * DAY
        signs_up = rng.random() < 0.7
        n_before = 1 + poisson(rng, 1.2)
        t = t0
        for k in range(n_before):
            self.at(t, self._on_browse, signs_up and k == n_before - 1)
            t += rng.expovariate(1 / (4 * DAY))
        if signs_up:
            for _ in range(poisson(rng, 3.0)):  # clicks from the newsletter over the next months
                self.at(t + rng.uniform(1, 150) * DAY, self._on_newsletter_click)
        if not signs_up or rng.random() < 0.35:
            self.at(t0 + rng.uniform(0, 30) * DAY, self._on_question)

    def _on_browse(self, t: float, signup: bool) -> None:
        script = self.browse_script(1 + poisson(self.rng, 2.5), self.entry())
        if signup:
            extra, flags = self.signup_extra()
            script.append(("newsletter_signup", "/newsletter", extra, flags))
        self.session(self.visitor(0), self.ctx.shape.wall(t), script)

    def _on_newsletter_click(self, t: float, _: Any) -> None:
        entry = ', "utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "weekly"'
        self.session(self.visitor(0), self.ctx.shape.wall(t), self.browse_script(1 + poisson(self.rng, 2), entry))

    def _on_question(self, t: float, _: Any) -> None:
        self.open_ticket(t, "question", None)

    def finish(self) -> None:
        super().finish()
        self._finish_tickets()
        if self.email_emitted:
            sink = self.ctx.sink
            sink.totals["prospects"] += 1
            if sink.keep:
                sink.prospect_emails.add(self.email)


class _Shopper(_Entity):
    """A person who buys: registered customers and guest-only buyers share orders, returns, guest records."""

    def __init__(self, ctx: SimContext, index: int) -> None:
        super().__init__(ctx, index)
        self.orders: list[_Ord] = []
        self.shop_records: list[tuple[int, str]] = []  # (created wall, customer_id) of records in the files
        self.kept_rows: dict[str, tuple[str, ...]] = {}
        self.n_guest = 0
        self.band = 2
        self.favourite = 0
        self.web_share = 0.7
        self.returns_rate = ctx.cfg.return_rate
        self.partial_rate = ctx.cfg.partial_return_rate

    def draw_person(self) -> None:
        rng = self.rng
        u = rng.random()
        self.gender = "female" if u < 0.49 else "male" if u < 0.975 else "diverse"
        pool = FEMALE_NAMES if self.gender == "female" else MALE_NAMES if self.gender == "male" else (
            FEMALE_NAMES + MALE_NAMES)
        self.first, self.last = rng.choice(pool), rng.choice(LAST_NAMES)
        self.country: Country = rng.choices(COUNTRIES, COUNTRY_WEIGHTS)[0]
        self.city = rng.choice(self.country.cities)
        self.phone: tuple[str, str] | None = self.draw_phone() if rng.random() < 0.88 else None
        self.favourite = rng.randrange(len(CATEGORIES))

    def draw_phone(self) -> tuple[str, str]:
        digits = self.country.subscriber_digits
        return self.city.area, str(self.rng.randrange(10 ** (digits - 1), 10**digits))

    def phone_out(self) -> str:
        """The phone as typed on this record: canonical, another national format, or a placeholder."""
        if self.phone is None:
            return ""
        d = self.dirt.random
        if d() < self.cfg.placeholder_phone_rate:
            return placeholder_phone(self.country, d())
        style = 0 if d() >= self.cfg.phone_format_rate else 1 + int(d() * (PHONE_STYLES - 1))
        return render_phone(self.country, self.phone[0], self.phone[1], style)

    def _count_phone(self, text: str) -> None:
        if not text:
            return
        dirt = self.ctx.sink.dirt
        dirt["phones"] += 1
        if text in ("0000000000", "n/a", "123456") or " 000 000000" in text:
            dirt["placeholder_phones"] += 1
        elif not text.startswith("+") or "(" in text or " " not in text:
            dirt["phone_other_formats"] += 1
        elif text.count("-"):
            dirt["phone_other_formats"] += 1

    def put_customer(self, wall: int, customer_id: str, values: tuple[str, ...], day: int | None = None) -> bool:
        """One customers.csv row (and, now and then, its exact duplicate)."""
        sink = self.ctx.sink
        key = f"{wall:010d}{customer_id}"
        line = csv_line(values)
        day = self.day(wall) if day is None else day
        if not sink.put("c", day, key, line):
            return False
        if self.dirt.random() < self.cfg.duplicate_customer_rate:
            sink.put("c", day, key, line)
            sink.dirt["duplicate_customer_rows"] += 1
        self._count_timestamps(values[-2], values[-1])
        self._count_email(values[4])
        self._count_phone(values[5])
        if sink.keep:
            self.kept_rows[customer_id] = values
        return True

    def guest_record(self, order_wall: int) -> str:
        """A guest checkout creates a customer record of its own, with the e-mail typed at checkout."""
        seq = self.n_guest
        self.n_guest += 1
        gid = f"G{permute40(code40(self.kind, self.index, seq), _KEY_GUEST):013d}"
        day_floor = order_wall - (order_wall - self.ctx.start_ts) % DAY
        created = max(day_floor, order_wall - 20 - self.rng.randrange(300))
        phone = self.phone_out() if self.rng.random() < 0.6 else ""
        consent = "true" if self.rng.random() < 0.3 else "false"
        created_s = self.ts(created)
        values = (gid, "guest", self.first, self.last, self.email_out(), phone, "", "", "", "", self.city.name,
                  self.city.region, self.country.code, "", consent, created_s, created_s)
        if self.put_customer(created, gid, values):
            self.shop_records.append((created, gid))
            self.ctx.sink.dirt["guest_records"] += 1
        return gid

    # -- orders

    def basket(self, wall: int) -> list[tuple[int, int, int]]:
        rng, cat = self.rng, self.ctx.catalogue
        chosen: list[int] = []
        for _ in range(1 + min(5, poisson(rng, 0.75))):
            p = cat.pick(rng, self.band, self.favourite if rng.random() < 0.35 else None)
            if p in chosen:
                continue
            chosen.append(p)
            partner = cat.partner.get(p)
            if partner and partner[0] not in chosen and rng.random() < partner[1]:
                chosen.append(partner[0])
        return [(p, 1 + (poisson(rng, 0.35) if self.band >= 2 else poisson(rng, 0.2)), cat.price_at(p, wall))
                for p in chosen]

    def place_order(self, t: float, record: str | None, device: int | None, login: bool) -> _Ord:
        """An order at raw time ``t``: through a web session on ``device``, or in store/by phone if None.

        ``record`` None means a guest checkout (a new guest record is made for it).
        """
        ctx, rng = self.ctx, self.rng
        seq = len(self.orders)
        o = _Ord()
        o.oid = f"O{permute40(code40(self.kind, self.index, seq), _KEY_ORDER):013d}"
        start = ctx.shape.wall(t)
        o.lines = self.basket(start)
        if device is None:
            o.channel = "store" if rng.random() < 0.75 else "phone"
            o.wall = start
        else:
            o.channel = "web"
            visitor = self.visitor(device)
            script = [("page_view", rng.choice(_PAGES), self.entry(), 0)]
            if login:
                script.append(("login", "/account/login", f', "customer_id": "{record}"', 1))
                visitor.logged_in = True
            for p, _, _ in o.lines:
                pid = ctx.catalogue.ids[p]
                script.append(("product_view", f"/product/{pid}", f', "product_id": "{pid}"', 0))
                script.append(("add_to_cart", f"/product/{pid}", f', "product_id": "{pid}"', 0))
            script.append(("checkout", "/checkout", "", 0))
            o.wall = self.session(visitor, start, script)
        o.record = record if record is not None else self.guest_record(o.wall)
        o.status = "cancelled" if rng.random() < 0.04 else "completed"
        o.amount = sum(q * price for _, q, price in o.lines)
        o.refund = 0
        o.updated = o.wall
        o.ordered_s = self.ts(o.wall)
        self.orders.append(o)
        o.emitted = self._order_row(o, o.ordered_s)
        if o.emitted:
            sink = ctx.sink
            key = f"{o.wall:010d}{o.oid}"
            day = self.day(o.wall)
            for n, (p, q, price) in enumerate(o.lines, start=1):
                sink.put("l", day, f"{key}{n:03d}", f"{o.oid},{n},{ctx.catalogue.ids[p]},{q},{money(price)}")
        if o.status == "completed":
            u = rng.random()
            if u < self.returns_rate:
                self.at(t + rng.uniform(3, 30) * DAY, self._on_return, (o, True))
            elif u < self.returns_rate + self.partial_rate:
                self.at(t + rng.uniform(3, 30) * DAY, self._on_return, (o, False))
        if rng.random() < 0.02:  # late delivery, damaged goods...
            self.at(t + rng.uniform(1, 10) * DAY, self._on_complaint, o)
        return o

    def _order_row(self, o: _Ord, updated_s: str) -> bool:
        sink = self.ctx.sink
        refund = money(o.refund) if o.refund else ""
        line = f"{o.oid},{o.record},{o.ordered_s},{o.status},EUR,{o.channel},{refund},{updated_s}"
        key = f"{o.updated:010d}{o.oid}"
        day = self.day(o.updated)
        if not sink.put("o", day, key, line):
            return False
        if self.dirt.random() < self.cfg.duplicate_order_rate:
            sink.put("o", day, key, line)
            sink.dirt["duplicate_order_rows"] += 1
        self._count_timestamps(o.ordered_s, updated_s)
        return True

    def _on_return(self, t: float, arg: tuple[_Ord, bool]) -> None:
        o, full = arg
        rng = self.rng
        if full:
            o.status, o.refund = "returned", o.amount
        else:
            o.status = "partially_returned"
            units = [(q, price) for _, q, price in o.lines]
            if len(units) > 1:
                keep = rng.randrange(len(units))
                o.refund = sum(q * p for k, (q, p) in enumerate(units) if k != keep and rng.random() < 0.6)
            elif units[0][0] > 1:
                o.refund = units[0][1] * rng.randrange(1, units[0][0])
            if not 0 < o.refund < o.amount:  # a goodwill refund on part of the price
                o.refund = max(1, min(o.amount - 1, int(o.amount * rng.uniform(0.15, 0.5))))
        o.updated = max(self.ctx.shape.wall(t), o.wall + 1)
        if o.emitted and self._order_row(o, self.ts(o.updated)):
            self.ctx.sink.dirt["order_updates"] += 1
        if rng.random() < 0.12:
            self.at(t + rng.uniform(0.2, 5) * DAY, self._on_complaint, o)

    def _on_complaint(self, t: float, o: _Ord) -> None:
        self.open_ticket(t, "complaint", o.record if self.rng.random() < 0.5 else None)

    def primary_id(self) -> str | None:
        return min(self.shop_records)[1] if self.shop_records else None

    def _finish_shop(self, primary: str | None) -> None:
        """Totals of what reached the files, keyed by the person's primary shop id."""
        sink = self.ctx.sink
        totals = sink.totals
        self._finish_tickets()
        if primary is None:
            if self.email_emitted:
                totals["prospects"] += 1
                if sink.keep:
                    sink.prospect_emails.add(self.email)
            return
        totals["shop_customers"] += 1
        totals["shop_customer_ids"] += len(self.shop_records)
        totals["guest_records"] += sum(1 for _, cid in self.shop_records if cid.startswith("G"))
        revenue, last = 0, None
        for o in self.orders:
            if not o.emitted:
                continue
            totals["orders"] += 1
            totals[f"{o.status}_orders"] += 1
            if o.status in PURCHASE_STATUSES:
                totals["purchases"] += 1
                revenue += o.amount - o.refund
                last = o.wall if last is None else max(last, o.wall)
        totals["revenue_cents"] += revenue
        if last is not None:
            totals["buyers"] += 1
        if not sink.keep:
            return
        for cid, row in self.kept_rows.items():
            sink.customers.append(Customer(cid, row[1], primary, *row[2:15], datetime.fromisoformat(row[15]),
                                           datetime.fromisoformat(row[16])))
            sink.primary[cid] = primary
        ids = self.ctx.catalogue.ids
        for o in self.orders:
            if o.emitted:
                sink.orders.append(Order(o.oid, o.record, primary, datetime.fromisoformat(o.ordered_s), o.status,
                                         o.channel, [(ids[p], q, c) for p, q, c in o.lines], o.refund,
                                         datetime.fromtimestamp(o.updated, UTC)))
        if last is not None:
            sink.revenue[primary] = revenue
            sink.last_purchase[primary] = to_date(last)
        for v in self.visitors:
            if v.identified and v.anonymous_before and last is not None:
                sink.converted_visitors[v.vid] = primary


class _GuestOnly(_Shopper):
    """Someone who only ever checks out as a guest: several guest records, one e-mail, one person."""

    kind = KIND_GUEST

    def __init__(self, ctx: SimContext, index: int, arrival_day: int) -> None:
        super().__init__(ctx, index)
        rng = self.rng
        self.draw_person()
        self.email = f"{mailbox(self.first)}_{mailbox(self.last)}.{index + 1}@{rng.choice(_EMAIL_DOMAINS)}"
        if rng.random() < ctx.cfg.shared_mailbox_rate:  # a family or office address several people use
            self.email = rng.choice(_SHARED_MAILBOXES)
            self.shared = True
        else:
            self.shared = False
        self.band = rng.choices(range(5), (25, 30, 25, 13, 7))[0]
        # a few orders a year at most, for a few months: guests are occasional buyers
        self.rate = ctx.cfg.orders_per_customer_year / 365 / DAY * 0.2 * min(rng.paretovariate(1.6), 15) / 2.4
        self.until = ctx.start_ts + (arrival_day + rng.expovariate(1 / 240)) * DAY
        self.last_record: str | None = None
        self.at(ctx.start_ts + (arrival_day + rng.random()) * DAY, self._on_order)

    def _on_order(self, t: float, _: Any) -> None:
        rng = self.rng
        reuse = self.last_record if self.last_record and rng.random() < 0.2 else None
        device = 0 if rng.random() < 0.85 else None
        o = self.place_order(t, reuse, device, login=False)
        self.last_record = o.record
        if rng.random() < 0.04:
            self.at(t + rng.uniform(1, 20) * DAY, self._on_question)
        nxt = t + rng.expovariate(self.rate)
        if nxt < self.until:
            self.at(nxt, self._on_order)

    def _on_question(self, t: float, _: Any) -> None:
        self.open_ticket(t, self.rng.choice(("question", "incident")), None)

    def finish(self) -> None:
        super().finish()
        if self.shared and self.shop_records:
            self.ctx.sink.dirt["shared_mailboxes"] += 1
        self._finish_shop(self.primary_id())


class _Registered(_Shopper):
    """A registered customer: profile, lifecycle (active, churned, won back), orders, service, web."""

    kind = KIND_REGISTERED

    def __init__(self, ctx: SimContext, index: int, arrival_day: int | None) -> None:
        super().__init__(ctx, index)
        cfg, rng = ctx.cfg, self.rng
        self.reg_id = f"C{index + 1:07d}"
        self.draw_person()
        self.email = f"{mailbox(self.first)}.{mailbox(self.last)}.{index + 1}@{rng.choice(_EMAIL_DOMAINS)}"
        age = 18 + int(rng.betavariate(2.0, 3.2) * 67)
        self.birth_year = "" if rng.random() < 0.12 else str(ctx.ref_year - age)
        if age < 25:
            occupation = "student" if rng.random() < 0.5 else rng.choice(OCCUPATIONS[:4])
        elif age > 66:
            occupation = "retired" if rng.random() < 0.8 else rng.choice(OCCUPATIONS[:3])
        else:
            occupation = rng.choices(OCCUPATIONS, (50, 12, 10, 8, 2, 2, 6, 4))[0]
        self.occupation = "" if rng.random() < 0.2 else occupation
        income_weights = (40, 35, 17, 6, 2) if occupation in ("student", "unemployed") else (10, 22, 33, 23, 12)
        self.band = rng.choices(range(5), income_weights)[0]
        self.income = "" if rng.random() < 0.18 else INCOME_BANDS[self.band]
        ch = rng.choices(range(len(CHANNELS)), _CHANNEL_WEIGHTS)[0]
        self.channel = CHANNELS[ch]
        self.consent = rng.random() < 0.55
        self.gender_out = "" if rng.random() < 0.1 else self.gender
        self.web_share = 0.35 if self.channel == "store" else 0.45 if age > 62 else 0.75
        young, old = age < 25, age > 62
        # how much and how often: Pareto weights carry the revenue concentration
        self.weight = min(rng.paretovariate(1.16), 60.0)
        self.buyer = rng.random() >= 0.15
        self.base_rate = (cfg.orders_per_customer_year / 365 / DAY * self.weight / W_MEAN
                          * _INCOME_FREQUENCY[self.band] * _COUNTRY_FREQUENCY[self.country.code]
                          * (0.85 if young else 1.0)) if self.buyer else 0.0
        self.session_rate = (cfg.sessions_per_customer_year / 365 / DAY * (0.45 + 0.55 * math.sqrt(
            min(self.weight, 20) / W_MEAN)) * (1.35 if young else 0.6 if old else 1.0))
        self.hazard = 1 / (LIFETIME_DAYS * DAY) * _CHANNEL_CHURN[ch] * (1.2 if young else 0.85 if old else 1.0)
        self.n_devices = 1 + (rng.random() < 0.45) + (rng.random() < 0.15)
        # state
        self.active = False
        self.registered = False
        self.complained = False
        self.boost_until = 0.0
        self.versions = [0, 0, 0, 0]  # order, session, ticket, churn: bumped when rates change
        self.churns = 0
        self.first_order_at: float | None = None
        self.mark = 0.0
        self.lifecycle: list[tuple[int, str]] = []
        self.reg_emitted = False
        self.reg_values: tuple[str, ...] = ()
        self.created_s = ""
        self.phone_s = ""
        self.email_s = ""
        # follow-up calls: a candidate date for everyone, a coin decides who is called (a fair comparison)
        begin = ctx.start_ts if arrival_day is None else ctx.start_ts + arrival_day * DAY
        self.call_at = begin + rng.uniform(30, 150) * DAY
        self.called = rng.random() < cfg.follow_up_call_rate
        self.reached = rng.random() < 0.7
        self.call_group: str | None = None
        if arrival_day is None:  # already a customer when the history starts
            self.created_raw = ctx.start_ts - rng.uniform(1, 3 * 365) * DAY
            self.at(float(ctx.start_ts), self._on_begin, rng.random() < 0.72)
        else:
            self.created_raw = ctx.start_ts + (arrival_day + rng.random()) * DAY
            self._prehistory()
            self.at(self.created_raw, self._on_register)
        self.at(self.call_at, self._on_call)
        self.at(ctx.start_ts + rng.expovariate(0.5 / 365) * DAY, self._on_profile_change)

    # -- before the account exists

    def _prehistory(self) -> None:
        rng, created = self.rng, self.created_raw
        if rng.random() < 0.3:  # browsed anonymously first, perhaps signed up to the newsletter
            first = created - rng.uniform(3, PREHISTORY_DAYS) * DAY
            n = 1 + poisson(rng, 1.5)
            times = sorted(rng.uniform(first, created - 600) for _ in range(n))
            signs_up = rng.random() < 0.6
            for k, when in enumerate(times):
                self.at(when, self._on_pre_browse, signs_up and k == n - 1)
        if self.buyer and rng.random() < 0.06:  # checked out as a guest before registering
            self.at(created - rng.uniform(1, 30) * DAY, self._on_pre_guest_order)

    def _on_pre_browse(self, t: float, signup: bool) -> None:
        if t < self.ctx.start_ts:
            return
        script = self.browse_script(1 + poisson(self.rng, 2.5), self.entry(), self.favourite)
        if signup:
            extra, flags = self.signup_extra()
            script.append(("newsletter_signup", "/newsletter", extra, flags))
        self.session(self.visitor(0), self.ctx.shape.wall(t), script)

    def _on_pre_guest_order(self, t: float, _: Any) -> None:
        if t >= self.ctx.start_ts:
            self.place_order(t, None, 0, login=False)

    # -- the account

    def registered_values(self, updated_s: str) -> tuple[str, ...]:
        phone_s = self.phone_s
        return (self.reg_id, "registered", self.first, self.last, self.email_s, phone_s, self.gender_out,
                self.birth_year, self.income, self.occupation, self.city.name, self.city.region,
                self.country.code, self.channel, "true" if self.consent else "false", self.created_s, updated_s)

    def _put_registered(self, wall: int, day: int | None = None) -> None:
        updated_s = self.created_s if wall == self.created_wall else self.ts(wall)
        if self.put_customer(wall, self.reg_id, self.registered_values(updated_s), day):
            if not self.reg_emitted:
                self.reg_emitted = True
                self.shop_records.append((self.created_wall, self.reg_id))

    def _open_account(self) -> None:
        self.registered = True
        self.created_wall = self.ctx.shape.wall(self.created_raw)
        self.created_s = self.ts(self.created_wall)
        self.email_s = self.email_out()
        self.phone_s = self.phone_out()

    def _on_begin(self, t: float, active: bool) -> None:
        """The history starts: the initial extract lists every existing customer on the first day."""
        self._open_account()
        self._put_registered(self.created_wall, day=0)
        self.lifecycle.append((int(t), "existing"))
        self.mark = t
        if active:
            self.active = True
        else:
            self.lifecycle.append((int(t), "churned"))
            if self.rng.random() < 0.3:
                self.at(t + self.rng.expovariate(1 / (150 * DAY)), self._on_winback, self.churns)
        self._reschedule(t)

    def _on_register(self, t: float, _: Any) -> None:
        rng = self.rng
        self._open_account()
        self._put_registered(self.created_wall)
        self.lifecycle.append((self.created_wall, "new"))
        if self.channel != "store":
            visitor = self.visitor(0)
            script = [("page_view", "/account/register", self.entry(), 0),
                      ("login", "/account/login", f', "customer_id": "{self.reg_id}"', 1)]
            visitor.logged_in = True
            self.session(visitor, self.created_wall, script)
        self.active = True
        self.mark = t
        if self.buyer and rng.random() < 0.55:  # most sign up while buying
            self.at(t + 300 + rng.random() * 1_200, self._on_order, -1)
        self._reschedule(t)

    # -- processes

    def _order_rate(self, t: float) -> float:
        if not self.active:
            return 0.0
        return self.base_rate * (CALL_RATE_BOOST if t < self.boost_until else 1.0)

    def _reschedule(self, t: float) -> None:
        """Rates changed at ``t``: redraw the next order, session, ticket and churn (memoryless)."""
        rng, v = self.rng, self.versions
        for k in range(4):
            v[k] += 1
        rate = self._order_rate(t)
        if rate > 0:
            self.at(t + rng.expovariate(rate), self._on_order, v[0])
        s_rate = self.session_rate * (1.0 if self.active else 0.15)
        self.at(t + rng.expovariate(s_rate), self._on_session, v[1])
        q_rate = (0.5 if self.active else 0.1) / 365 / DAY
        self.at(t + rng.expovariate(q_rate), self._on_question, v[2])
        if self.active:
            hazard = self.hazard * (COMPLAINT_HAZARD if self.complained else 1.0) * (
                0.5 if t < self.boost_until else 1.0)
            self.at(t + rng.expovariate(hazard), self._on_churn, v[3])

    def _expose(self, t: float) -> None:
        """Active time per complaint state, for the churn-hazard comparison."""
        ctx = self.ctx
        if self.active:
            lo, hi = max(self.mark, ctx.start_ts), min(t, ctx.horizon)
            if hi > lo:
                self.ctx.sink.churn_exposure["after_complaint" if self.complained else "no_complaint"][1] += (
                    (hi - lo) / DAY)
        self.mark = t

    def _on_order(self, t: float, version: int) -> None:
        if version != -1 and version != self.versions[0]:
            return
        rng = self.rng
        if self.first_order_at is None:
            self.first_order_at = t
        web = rng.random() < self.web_share
        guest = web and rng.random() < self.cfg.guest_checkout_rate
        if web:
            device = 0 if rng.random() < 0.65 else rng.randrange(self.n_devices)
            login = not guest and (not self.visitor(device).logged_in or rng.random() < 0.5)
            self.place_order(t, None if guest else self.reg_id, device, login)
        else:
            self.place_order(t, self.reg_id, None, False)
        if version != -1:
            rate = self._order_rate(t)
            if rate > 0:
                self.at(t + rng.expovariate(rate), self._on_order, version)

    def _on_session(self, t: float, version: int) -> None:
        if version != self.versions[1]:
            return
        rng = self.rng
        device = 0 if rng.random() < 0.65 else rng.randrange(self.n_devices)
        visitor = self.visitor(device)
        script = self.browse_script(1 + poisson(rng, 3.2), self.entry(), self.favourite)
        if not visitor.logged_in or rng.random() < 0.25:
            script.insert(1, ("login", "/account/login", f', "customer_id": "{self.reg_id}"', 1))
            visitor.logged_in = True
        self.session(visitor, self.ctx.shape.wall(t), script)
        s_rate = self.session_rate * (1.0 if self.active else 0.15)
        self.at(t + rng.expovariate(s_rate), self._on_session, version)

    def _on_question(self, t: float, version: int) -> None:
        if version != self.versions[2]:
            return
        rng = self.rng
        self.open_ticket(t, "question" if rng.random() < 0.7 else "incident",
                         self.reg_id if rng.random() < 0.6 else None)
        q_rate = (0.5 if self.active else 0.1) / 365 / DAY
        self.at(t + rng.expovariate(q_rate), self._on_question, version)

    def _on_complaint(self, t: float, o: _Ord) -> None:
        super()._on_complaint(t, o)
        if not self.complained:  # a complaint raises the churn hazard for good
            self._expose(t)
            self.complained = True
            if self.active:
                self._reschedule(t)

    def _on_churn(self, t: float, version: int) -> None:
        if version != self.versions[3] or not self.active:
            return
        self._expose(t)
        if t >= self.ctx.start_ts:
            self.ctx.sink.churn_exposure["after_complaint" if self.complained else "no_complaint"][0] += 1
        self.active = False
        self.churns += 1
        self.lifecycle.append((self.ctx.shape.wall(t), "churned"))
        if self.rng.random() < WINBACK_SHARE:
            self.at(t + (30 + self.rng.expovariate(1 / 140)) * DAY, self._on_winback, self.churns)
        self._reschedule(t)

    def _on_winback(self, t: float, churns: int) -> None:
        """Back from churn; ``churns`` ties the win-back to the lapse it ends (a later lapse needs its own)."""
        if self.active or churns != self.churns:
            return
        self._expose(t)
        self.active = True
        self.lifecycle.append((self.ctx.shape.wall(t), "won_back"))
        if self.buyer:
            self.at(t + self.rng.uniform(0.1, 10) * DAY, self._on_order, -1)
        self._reschedule(t)

    def _on_call(self, t: float, _: Any) -> None:
        """Follow-up date: existing customers are called if their coin says so; the rest are the control."""
        if self.first_order_at is None or self.first_order_at > t or not self.registered:
            return
        if not self.called:
            self.call_group = "not_called"
            return
        self.call_group = "reached" if self.reached else "no_answer"
        self.open_ticket(t, "follow_up_call", self.reg_id, outcome="reached" if self.reached else "no_answer")
        if not self.reached:
            return
        self._expose(t)
        self.boost_until = t + CALL_EFFECT_DAYS * DAY
        self.at(self.boost_until, self._on_boost_end)
        if not self.active and self.rng.random() < 0.35:
            self.at(t + self.rng.uniform(1, 30) * DAY, self._on_winback, self.churns)
        self._reschedule(t)

    def _on_boost_end(self, t: float, _: Any) -> None:
        self._expose(t)
        self._reschedule(t)

    def _on_profile_change(self, t: float, _: Any) -> None:
        """Moves, new phone numbers, consent withdrawn or given, a new surname: the row is sent again."""
        rng = self.rng
        if self.registered and t >= self.ctx.start_ts:
            u = rng.random()
            if u < 0.4:
                self.city = rng.choice(self.country.cities)
                if self.phone is not None and rng.random() < 0.5:
                    self.phone = self.draw_phone()
                    self.phone_s = self.phone_out()
            elif u < 0.7:
                self.phone = self.draw_phone()
                self.phone_s = self.phone_out()
            elif u < 0.9:
                self.consent = not self.consent  # mostly withdrawn: more people start with consent
            else:
                self.last = rng.choice(LAST_NAMES)
            self._put_registered(max(self.ctx.shape.wall(t), self.created_wall + 1))
        self.at(t + rng.expovariate(0.5 / 365) * DAY, self._on_profile_change)

    # -- the end of the history

    def finish(self) -> None:
        self._expose(float(self.ctx.horizon))
        super().finish()
        primary = self.reg_id if self.reg_emitted else self.primary_id()
        self._finish_shop(primary)
        sink = self.ctx.sink
        if self.call_group is not None and primary is not None:
            lo, hi = self.call_at - CALL_WINDOW_DAYS * DAY, self.call_at + CALL_WINDOW_DAYS * DAY
            if lo >= self.ctx.start_ts and hi <= self.ctx.horizon:
                wall = self.ctx.shape.wall(self.call_at)
                before = after = 0
                for o in self.orders:
                    if o.emitted and o.status in PURCHASE_STATUSES:
                        if lo <= o.wall < wall:
                            before += o.amount - o.refund
                        elif wall <= o.wall < hi:
                            after += o.amount - o.refund
                spend = sink.follow_up_spend[self.call_group]
                spend[0] += before
                spend[1] += after
                spend[2] += 1
                if sink.keep:
                    sink.follow_ups[primary] = FollowUp(to_date(wall), self.call_group,
                                                        before, after)
        if sink.keep and primary is not None:
            sink.lifecycle[primary] = [(to_date(w), s) for w, s in self.lifecycle]


def make_entity(ctx: SimContext, kind: int, index: int, arrival_day: int | None) -> _Entity:
    if kind == KIND_REGISTERED:
        return _Registered(ctx, index, arrival_day)
    if kind == KIND_GUEST:
        return _GuestOnly(ctx, index, arrival_day or 0)
    if kind == KIND_PROSPECT:
        return _Prospect(ctx, index, arrival_day or 0)
    return _Anonymous(ctx, index, arrival_day or 0)
