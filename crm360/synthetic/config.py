"""What to generate: the presets and the generator's configuration."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, timedelta
from typing import Any

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
