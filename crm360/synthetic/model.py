"""What every simulated person draws on: the fixed parameters of the simulation, the seeds of its
random streams, the public record types, the product catalogue, the sink records go to and the
context one run shares."""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import date, datetime

from crm360.synthetic.config import GeneratorConfig
from crm360.synthetic.text import (
    DAY,
    Clock,
    DayShape,
)

KIND_REGISTERED, KIND_GUEST, KIND_PROSPECT, KIND_VISITOR = 0, 1, 2, 3
STREAM_LIFE, STREAM_DIRT, STREAM_ARRIVALS, STREAM_PRODUCTS, STREAM_MALFORMED = 1, 2, 3, 4, 5
KEY_GUEST, KEY_ORDER, KEY_TICKET, KEY_VISITOR = 11, 23, 37, 53

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
INCOME_FREQUENCY = (0.85, 0.95, 1.0, 1.08, 1.15)
OCCUPATIONS = ("employee", "manager", "self_employed", "civil_servant", "student", "retired", "homemaker",
               "unemployed")
CHANNELS = ("organic_search", "paid_search", "social", "newsletter", "referral", "affiliate", "store", "direct")
CHANNEL_WEIGHTS = (24, 18, 14, 8, 8, 6, 12, 10)
CHANNEL_CHURN = (1.0, 1.25, 1.15, 0.9, 0.8, 1.35, 0.85, 0.95)  # bought traffic churns faster
COUNTRY_FREQUENCY = {"DE": 1.1, "FR": 0.95, "NL": 1.05, "AT": 1.0, "IT": 0.9, "PL": 0.85}
EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com", "post.example.net",
                  "inbox.example.org")
SHARED_MAILBOXES = ("info@office.example.com", "noreply@shop.example.net", "family@home.example.org")

PAGES = ("/", "/offers", "/help", "/blog/gift-ideas", "/blog/care-guide", "/about", "/delivery")
_ENTRY_WEIGHTS = (34, 14, 6, 4, 8, 5, 8, 10, 5, 6)
ENTRY = (  # a session's first event: where the visitor came from
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
ENTRY_CUM = tuple(sum(_ENTRY_WEIGHTS[: i + 1]) for i in range(len(_ENTRY_WEIGHTS)))

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

    cfg: GeneratorConfig
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
