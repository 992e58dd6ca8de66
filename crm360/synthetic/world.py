"""What a generation produced: its totals, the manifest, and (when kept) every record."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date

from crm360.synthetic.config import GeneratorConfig
from crm360.synthetic.model import Customer, FollowUp, Order


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
