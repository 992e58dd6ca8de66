"""Hand-made days on top of a generated world: the records a scenario needs, written as further
drops in the sources' real formats, so that a test can rely on the scenario happening instead of
hoping the generator produced it.

A day's records go to files of their own beside the generator's, dated by their path as any drop
(``sales/<day>-scenario/orders.csv``, ``service/tickets_<day>-scenario.json``,
``web/events_<day>-scenario.jsonl``; crm360.ingest.drops.file_date reads the date). The columns
are the contract's (crm360.ingest.sources.CONTRACT); a day's files are written whole each time
:meth:`Scenario.write` is called, so changing a record of a day already loaded and writing the
day again is a source replacing a file it delivered."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from crm360.ingest.sources import contract_table

SUFFIX = "scenario"


def columns(name: str) -> tuple[str, ...]:
    return contract_table("sales", name).columns


def stamp(moment: datetime) -> str:
    """A timestamp as the exports write it: ISO 8601 with its UTC offset."""
    return moment.isoformat(timespec="seconds")


@dataclass
class Day:
    """One day's hand-made records, by file."""

    customers: list[dict] = field(default_factory=list)
    orders: list[dict] = field(default_factory=list)
    order_lines: list[dict] = field(default_factory=list)
    tickets: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)


class Scenario:
    """The hand-made records of several days under one landing folder."""

    def __init__(self, landing: Path):
        self.landing = Path(landing)
        self.days: dict[date, Day] = {}

    def day(self, day: date) -> Day:
        return self.days.setdefault(day, Day())

    def customer(self, day: date, customer_id: str, first_name: str, email: str = "", phone: str = "",
                 account_type: str = "registered", created_at: datetime | None = None,
                 updated_at: datetime | None = None, **more: str) -> dict:
        """A shop customer record (a guest checkout's record has ``account_type='guest'``); a record
        of a customer delivered before, with a later ``updated_at``, is its newer version."""
        created = stamp(created_at) if created_at else f"{day.isoformat()}T08:00:00+00:00"
        row = {"customer_id": customer_id, "account_type": account_type, "first_name": first_name,
               "last_name": more.pop("last_name", "Scenario"), "email": email, "phone": phone,
               "city": "Berlin", "region": "Berlin", "country_code": "DE", "marketing_consent": "true",
               "created_at": created, "updated_at": stamp(updated_at) if updated_at else created, **more}
        self.day(day).customers.append(row)
        return row

    def order(self, day: date, order_id: str, customer_id: str, ordered_at: datetime,
              lines: tuple[tuple[str, int, str], ...] = (), status: str = "completed", refund: str = "",
              updated_at: datetime | None = None) -> dict:
        """An order and its lines ((product, quantity, unit price) each); an order delivered before,
        with a later ``updated_at`` and no lines, is its newer version (a return, a refund)."""
        row = {"order_id": order_id, "customer_id": customer_id, "ordered_at": stamp(ordered_at), "status": status,
               "currency": "EUR", "channel": "web", "refund_amount": refund,
               "updated_at": stamp(updated_at or ordered_at)}
        self.day(day).orders.append(row)
        for n, (product, quantity, price) in enumerate(lines, start=1):
            self.day(day).order_lines.append({"order_id": order_id, "line_number": str(n), "product_id": product,
                                              "quantity": str(quantity), "unit_price": price})
        return row

    def event(self, day: date, event_id: str, visitor_id: str, occurred_at: datetime, event_type: str = "page_view",
              page: str = "/", **more: str) -> dict:
        """A web event (``customer_id`` for a login, ``email`` for a sign-up), in ``day``'s drop whatever
        its ``occurred_at``: an event dated earlier is a late one."""
        row = {"event_id": event_id, "visitor_id": visitor_id, "event_type": event_type, "page": page,
               "occurred_at": stamp(occurred_at), **more}
        self.day(day).events.append(row)
        return row

    def ticket(self, day: date, ticket_id: str, email: str, name: str, created_at: datetime,
               customer_ref: str | None = None) -> dict:
        row = {"id": ticket_id, "type": "question", "status": "solved", "created_at": stamp(created_at),
               "updated_at": stamp(created_at), "solved_at": stamp(created_at), "requester": {"email": email,
               "name": name}, "customer_ref": customer_ref, "satisfaction": 4, "channel": "email",
               "direction": "inbound"}
        self.day(day).tickets.append(row)
        return row

    def write(self, day: date) -> list[Path]:
        """Write ``day``'s files (only those it has records for); returns them."""
        records, written = self.days[day], []
        sales = self.landing / "sales" / f"{day.isoformat()}-{SUFFIX}"
        for name, rows in (("customers", records.customers), ("orders", records.orders),
                           ("order_lines", records.order_lines)):
            if rows:
                sales.mkdir(parents=True, exist_ok=True)
                buffer = io.StringIO()
                writer = csv.DictWriter(buffer, fieldnames=columns(name), lineterminator="\n")
                writer.writeheader()
                writer.writerows({c: row.get(c, "") for c in columns(name)} for row in rows)
                written.append(_write(sales / f"{name}.csv", buffer.getvalue()))
        if records.tickets:
            document = {"exported_at": f"{day.isoformat()}T23:59:59+00:00", "tickets": records.tickets}
            written.append(_write(self.landing / "service" / f"tickets_{day.isoformat()}-{SUFFIX}.json",
                                  json.dumps(document, ensure_ascii=False, indent=1) + "\n"))
        if records.events:
            written.append(_write(self.landing / "web" / f"events_{day.isoformat()}-{SUFFIX}.jsonl",
                                  "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in records.events)))
        return written


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
