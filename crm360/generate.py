"""Deterministic synthetic source systems.

Writes what three real systems would hand over, one drop per day:

    landing/sales/<date>/customers.csv      shop customers created or changed that day
    landing/sales/<date>/orders.csv         orders placed that day
    landing/sales/<date>/order_lines.csv    their lines
    landing/sales/<date>/products.csv       the catalogue (first day only)
    landing/service/tickets_<date>.json     helpdesk export: {"exported_at", "tickets": [...]}
    landing/web/events_<date>.jsonl         one web event per line

plus ``landing/manifest.json`` with the generator's own totals, which tests use to
reconcile the marts. The same seed and parameters always give the same bytes.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path

DEFAULT_END_DATE = date(2026, 10, 31)

PRESETS = {
    # name: (customers, days of history, products, prospects, anonymous visitors)
    "tiny": dict(customers=200, days=120, products=40, prospects=60, anonymous_visitors=150),
    "small": dict(customers=2_000, days=180, products=200, prospects=600, anonymous_visitors=1_500),
}

CATEGORIES = ["electronics", "home", "garden", "toys", "books", "fashion", "sports", "beauty"]
FIRST_NAMES = ["Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Greta", "Hugo", "Ines", "Jonas",
               "Karla", "Luca", "Mia", "Noah", "Olga", "Paul", "Rosa", "Sven", "Tara", "Yusuf"]
LAST_NAMES = ["Schmidt", "Meyer", "Novak", "Rossi", "Dubois", "Jansen", "Kowalski", "Berg",
              "Silva", "Horvat", "Nielsen", "Weber", "Costa", "Müller", "Larsen", "Garcia"]
COUNTRIES = [("DE", "Berlin", "+49"), ("FR", "Paris", "+33"), ("NL", "Utrecht", "+31"),
             ("AT", "Wien", "+43"), ("IT", "Milano", "+39"), ("PL", "Kraków", "+48")]
OFFSETS = [UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=2))]
PAGES = ["/", "/catalog", "/product", "/cart", "/help", "/blog", "/offers"]

CUSTOMER_COLUMNS = ["customer_id", "first_name", "last_name", "email", "phone", "city",
                    "country_code", "created_at", "updated_at"]
ORDER_COLUMNS = ["order_id", "customer_id", "ordered_at", "status", "currency", "updated_at"]
LINE_COLUMNS = ["order_id", "line_number", "product_id", "quantity", "unit_price"]
PRODUCT_COLUMNS = ["product_id", "product_name", "category", "list_price"]


@dataclass
class Customer:
    customer_id: str
    first_name: str
    last_name: str
    email: str
    phone: str
    city: str
    country_code: str
    created_at: datetime
    weight: float


@dataclass
class Order:
    order_id: str
    customer_id: str
    ordered_at: datetime
    status: str
    lines: list[tuple[str, int, int]]  # product_id, quantity, unit price in cents

    @property
    def amount_cents(self) -> int:
        return sum(q * p for _, q, p in self.lines)


@dataclass
class World:
    """Everything generated, kept in memory so tests can compute expected results."""

    start_date: date
    end_date: date
    customers: list[Customer] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    tickets: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    products: list[dict] = field(default_factory=list)
    prospect_emails: set[str] = field(default_factory=set)
    anonymous_visitors: set[str] = field(default_factory=set)

    def revenue_by_customer(self) -> dict[str, int]:
        """Revenue in cents of completed orders, per shop customer id."""
        out: dict[str, int] = defaultdict(int)
        for o in self.orders:
            if o.status == "completed":
                out[o.customer_id] += o.amount_cents
        return dict(out)

    def last_purchase_by_customer(self) -> dict[str, date]:
        out: dict[str, date] = {}
        for o in self.orders:
            if o.status == "completed":
                d = o.ordered_at.astimezone(UTC).date()
                if o.customer_id not in out or d > out[o.customer_id]:
                    out[o.customer_id] = d
        return out

    def manifest(self) -> dict:
        revenue = self.revenue_by_customer()
        return {
            "start_date": self.start_date.isoformat(),
            "end_date": self.end_date.isoformat(),
            "shop_customers": len(self.customers),
            "prospects": len(self.prospect_emails),
            "anonymous_visitors": len(self.anonymous_visitors),
            "people": len(self.customers) + len(self.prospect_emails) + len(self.anonymous_visitors),
            "buyers": len(revenue),
            "orders": len(self.orders),
            "completed_orders": sum(1 for o in self.orders if o.status == "completed"),
            "order_lines": sum(len(o.lines) for o in self.orders),
            "revenue": f"{sum(revenue.values()) / 100:.2f}",
            "products": len(self.products),
            "tickets": len(self.tickets),
            "complaints": sum(1 for t in self.tickets if t["type"] == "complaint"),
            "web_events": len(self.events),
            "web_sessions": count_sessions(self.events),
        }


@dataclass(frozen=True)
class GeneratorConfig:
    customers: int = 2_000
    days: int = 180
    products: int = 200
    prospects: int = 600
    anonymous_visitors: int = 1_500
    seed: int = 42
    end_date: date = DEFAULT_END_DATE

    @classmethod
    def preset(cls, name: str, **overrides) -> GeneratorConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}})


def _ts(rng: random.Random, day: date, hour_lo: int = 7, hour_hi: int = 23) -> datetime:
    """A moment on ``day`` (UTC), expressed in one of several local offsets."""
    moment = datetime.combine(day, time(0), tzinfo=UTC) + timedelta(
        seconds=rng.randrange(hour_lo * 3600, hour_hi * 3600)
    )
    return moment.astimezone(rng.choice(OFFSETS))


def _messy_email(rng: random.Random, email: str) -> str:
    """How people type their e-mail into a helpdesk form."""
    roll = rng.random()
    if roll < 0.15:
        return email.upper()
    if roll < 0.25:
        return f"  {email.capitalize()} "
    return email


def build_world(cfg: GeneratorConfig) -> World:
    rng = random.Random(cfg.seed)
    end = cfg.end_date
    start = end - timedelta(days=cfg.days - 1)
    world = World(start_date=start, end_date=end)

    # catalogue: prices in cents, popularity skewed
    popularity = []
    for i in range(1, cfg.products + 1):
        cat = CATEGORIES[i % len(CATEGORIES)]
        price = int(round(rng.lognormvariate(3.2, 0.8), 0)) * 100 + 99
        world.products.append({"product_id": f"P{i:05d}", "product_name": f"{cat.title()} item {i}",
                               "category": cat, "list_price": f"{price / 100:.2f}"})
        popularity.append(1.0 / i**0.8)
    product_ids = [p["product_id"] for p in world.products]
    prices = {p["product_id"]: int(round(float(p["list_price"]) * 100)) for p in world.products}

    order_seq = 0
    for i in range(1, cfg.customers + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        country, city, prefix = rng.choice(COUNTRIES)
        # a third existed before the history starts, the rest sign up during it
        if rng.random() < 0.35:
            created_day = start - timedelta(days=rng.randrange(1, 365))
        else:
            created_day = start + timedelta(days=rng.randrange(cfg.days))
        cust = Customer(
            customer_id=f"C{i:07d}", first_name=first, last_name=last,
            email=f"{first.lower()}.{last.lower().replace('ü', 'ue')}.{i}@example.com",
            phone=f"{prefix} {rng.randrange(100, 999)} {rng.randrange(1000000, 9999999)}",
            city=city, country_code=country, created_at=_ts(rng, created_day),
            # Pareto weights: a few customers carry most of the revenue
            weight=min(rng.paretovariate(1.16), 60.0),
        )
        world.customers.append(cust)

        active_from = max(created_day, start)
        churn_day = end
        if rng.random() < 0.3:  # lapses somewhere in the history
            churn_day = active_from + timedelta(days=rng.randrange(max(1, (end - active_from).days + 1)))
        span = (churn_day - active_from).days + 1
        expected = 0.15 * cust.weight * span / 30 if rng.random() > 0.2 else 0.0
        n_orders = _poisson(rng, expected)
        for _ in range(n_orders):
            order_seq += 1
            day = active_from + timedelta(days=rng.randrange(span))
            lines = []
            for _ in range(1 + _poisson(rng, 0.8)):
                pid = rng.choices(product_ids, weights=popularity)[0]
                lines.append((pid, 1 + _poisson(rng, 0.4), prices[pid]))
            status = rng.choices(["completed", "cancelled", "returned"], weights=[90, 5, 5])[0]
            world.orders.append(Order(f"O{order_seq:09d}", cust.customer_id, _ts(rng, day), status, lines))

    customer_emails = {c.email for c in world.customers}
    ticket_seq = 0

    def add_ticket(email: str, name: str, customer_ref: str | None, day: date) -> None:
        nonlocal ticket_seq
        ticket_seq += 1
        created = _ts(rng, day, 8, 18)
        ttype = rng.choices(["question", "complaint", "incident"], weights=[55, 30, 15])[0]
        solved = rng.random() < 0.85
        world.tickets.append({
            "id": f"T{ticket_seq:08d}",
            "type": ttype,
            "status": "solved" if solved else "open",
            "created_at": created.isoformat(),
            "solved_at": (created + timedelta(hours=rng.randrange(1, 96))).isoformat() if solved else None,
            "requester": {"email": _messy_email(rng, email), "name": name},
            "customer_ref": customer_ref,
            "satisfaction": rng.choice([1, 2, 3, 4, 5, 4, 5]) if solved and rng.random() < 0.6 else None,
            "channel": rng.choice(["email", "phone", "chat"]),
        })

    for cust in world.customers:
        if rng.random() < 0.25:
            first_day = max(cust.created_at.astimezone(UTC).date(), start)
            for _ in range(1 + _poisson(rng, 0.5)):
                day = first_day + timedelta(days=rng.randrange((end - first_day).days + 1))
                ref = cust.customer_id if rng.random() < 0.5 else None
                add_ticket(cust.email, f"{cust.first_name} {cust.last_name}", ref, day)

    # web: visitors of customers (log in), newsletter prospects, anonymous browsers
    visitor_seq = 0
    event_seq = 0

    def new_visitor() -> str:
        nonlocal visitor_seq
        visitor_seq += 1
        return f"v-{visitor_seq:08x}"

    def add_session(visitor: str, day: date, identify: dict | None) -> None:
        nonlocal event_seq
        moment = _ts(rng, day, 6, 22)
        n = 2 + _poisson(rng, 3)
        for k in range(n):
            event_seq += 1
            event = {"event_id": f"e{event_seq:010d}", "visitor_id": visitor,
                     "event_type": "page_view", "page": rng.choice(PAGES),
                     "occurred_at": moment.isoformat()}
            if identify and k == n - 1:
                event.update(identify)
            world.events.append(event)
            moment += timedelta(seconds=rng.randrange(5, 600))  # gaps well under 30 minutes

    for cust in world.customers:
        if rng.random() < 0.6:
            first_day = max(cust.created_at.astimezone(UTC).date(), start)
            sessions = 1 + _poisson(rng, 2 + cust.weight / 4)
            visitor = new_visitor()
            for _ in range(sessions):
                day = first_day + timedelta(days=rng.randrange((end - first_day).days + 1))
                if rng.random() < 0.3:  # a second device
                    visitor = new_visitor()
                add_session(visitor, day, {"event_type": "login", "customer_id": cust.customer_id})

    for j in range(1, cfg.prospects + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = f"{first.lower()}{j}@mail.example.org"
        day = start + timedelta(days=rng.randrange(cfg.days))
        if rng.random() < 0.7:
            add_session(new_visitor(), day, {"event_type": "newsletter_signup",
                                             "email": _messy_email(rng, email)})
            signed_up = True
        else:
            signed_up = False
        if rng.random() < 0.4 or not signed_up:
            add_ticket(email, f"{first} {last}", None, day)
        world.prospect_emails.add(email)

    for _ in range(cfg.anonymous_visitors):
        visitor = new_visitor()
        sessions = 1 + _poisson(rng, 0.7)
        for _ in range(sessions):
            add_session(visitor, start + timedelta(days=rng.randrange(cfg.days)), None)
        world.anonymous_visitors.add(visitor)

    assert not (world.prospect_emails & customer_emails)
    return world


def count_sessions(events: list[dict], gap: timedelta = timedelta(minutes=30)) -> int:
    """Sessions per visitor: a new one starts after ``gap`` without events."""
    by_visitor: dict[str, list[datetime]] = defaultdict(list)
    for e in events:
        by_visitor[e["visitor_id"]].append(datetime.fromisoformat(e["occurred_at"]))
    total = 0
    for moments in by_visitor.values():
        moments.sort()
        total += 1 + sum(1 for a, b in zip(moments, moments[1:], strict=False) if b - a > gap)
    return total


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:  # normal approximation keeps big customers cheap to draw
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    threshold, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= threshold:
            return k
        k += 1


def write_world(world: World, landing: Path) -> dict:
    """Write the daily drops under ``landing``; return the manifest."""
    start = world.start_date

    def day_of(moment: datetime) -> date:
        # the drop of the UTC day it happened on, within the generated history
        return min(max(moment.astimezone(UTC).date(), start), world.end_date)

    customers_by_day: dict[date, list] = defaultdict(list)
    for c in world.customers:
        customers_by_day[day_of(c.created_at)].append(c)
    orders_by_day: dict[date, list] = defaultdict(list)
    for o in world.orders:
        orders_by_day[day_of(o.ordered_at)].append(o)
    tickets_by_day: dict[date, list] = defaultdict(list)
    for t in world.tickets:
        tickets_by_day[day_of(datetime.fromisoformat(t["created_at"]))].append(t)
    events_by_day: dict[date, list] = defaultdict(list)
    for e in world.events:
        events_by_day[day_of(datetime.fromisoformat(e["occurred_at"]))].append(e)

    day = start
    while day <= world.end_date:
        iso = day.isoformat()
        sales = landing / "sales" / iso
        sales.mkdir(parents=True, exist_ok=True)
        if day == start:
            _write_csv(sales / "products.csv", PRODUCT_COLUMNS, world.products)
        _write_csv(sales / "customers.csv", CUSTOMER_COLUMNS, [
            {**{k: getattr(c, k) for k in CUSTOMER_COLUMNS if k not in ("created_at", "updated_at")},
             "created_at": c.created_at.isoformat(), "updated_at": c.created_at.isoformat()}
            for c in customers_by_day.get(day, [])
        ])
        day_orders = sorted(orders_by_day.get(day, []), key=lambda o: o.order_id)
        _write_csv(sales / "orders.csv", ORDER_COLUMNS, [
            {"order_id": o.order_id, "customer_id": o.customer_id,
             "ordered_at": o.ordered_at.isoformat(), "status": o.status, "currency": "EUR",
             "updated_at": o.ordered_at.isoformat()} for o in day_orders
        ])
        _write_csv(sales / "order_lines.csv", LINE_COLUMNS, [
            {"order_id": o.order_id, "line_number": n, "product_id": pid, "quantity": qty,
             "unit_price": f"{price / 100:.2f}"}
            for o in day_orders for n, (pid, qty, price) in enumerate(o.lines, start=1)
        ])
        service = landing / "service"
        service.mkdir(parents=True, exist_ok=True)
        export = {"exported_at": f"{iso}T23:59:59+00:00", "tickets": tickets_by_day.get(day, [])}
        (service / f"tickets_{iso}.json").write_text(json.dumps(export, ensure_ascii=False, indent=1),
                                                     encoding="utf-8")
        web = landing / "web"
        web.mkdir(parents=True, exist_ok=True)
        with open(web / f"events_{iso}.jsonl", "w", encoding="utf-8") as fh:
            for e in sorted(events_by_day.get(day, []), key=lambda e: e["occurred_at"]):
                fh.write(json.dumps(e, ensure_ascii=False) + "\n")
        day += timedelta(days=1)

    manifest = world.manifest()
    (landing / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def generate(landing: Path, cfg: GeneratorConfig) -> tuple[World, dict]:
    world = build_world(cfg)
    manifest = write_world(world, Path(landing))
    return world, manifest


__all__ = ["GeneratorConfig", "World", "generate", "build_world", "write_world", "PRESETS", "asdict"]
