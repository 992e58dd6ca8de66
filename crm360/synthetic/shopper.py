"""People who buy: the order, return and shop-record machinery buyers share, and guest-only buyers
who check out without an account."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from crm360.synthetic.entity import Entity, OrderState
from crm360.synthetic.model import (
    CATEGORIES,
    EMAIL_DOMAINS,
    KEY_GUEST,
    KEY_ORDER,
    KIND_GUEST,
    PAGES,
    PURCHASE_STATUSES,
    SHARED_MAILBOXES,
    Customer,
    Order,
    SimContext,
    poisson,
)
from crm360.synthetic.text import (
    COUNTRIES,
    COUNTRY_WEIGHTS,
    DAY,
    FEMALE_NAMES,
    LAST_NAMES,
    MALE_NAMES,
    PHONE_STYLES,
    Country,
    code40,
    csv_line,
    mailbox,
    money,
    permute40,
    placeholder_phone,
    render_phone,
    to_date,
)


class Shopper(Entity):
    """A person who buys: registered customers and guest-only buyers share orders, returns, guest records."""

    def __init__(self, ctx: SimContext, index: int) -> None:
        super().__init__(ctx, index)
        self.orders: list[OrderState] = []
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
        gid = f"G{permute40(code40(self.kind, self.index, seq), KEY_GUEST):013d}"
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

    def place_order(self, t: float, record: str | None, device: int | None, login: bool) -> OrderState:
        """An order at raw time ``t``: through a web session on ``device``, or in store/by phone if None.

        ``record`` None means a guest checkout (a new guest record is made for it).
        """
        ctx, rng = self.ctx, self.rng
        seq = len(self.orders)
        o = OrderState()
        o.oid = f"O{permute40(code40(self.kind, self.index, seq), KEY_ORDER):013d}"
        start = ctx.shape.wall(t)
        o.lines = self.basket(start)
        if device is None:
            o.channel = "store" if rng.random() < 0.75 else "phone"
            o.wall = start
        else:
            o.channel = "web"
            visitor = self.visitor(device)
            script = [("page_view", rng.choice(PAGES), self.entry(), 0)]
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

    def _order_row(self, o: OrderState, updated_s: str) -> bool:
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

    def _on_return(self, t: float, arg: tuple[OrderState, bool]) -> None:
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

    def _on_complaint(self, t: float, o: OrderState) -> None:
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


class GuestOnly(Shopper):
    """Someone who only ever checks out as a guest: several guest records, one e-mail, one person."""

    kind = KIND_GUEST

    def __init__(self, ctx: SimContext, index: int, arrival_day: int) -> None:
        super().__init__(ctx, index)
        rng = self.rng
        self.draw_person()
        self.email = f"{mailbox(self.first)}_{mailbox(self.last)}.{index + 1}@{rng.choice(EMAIL_DOMAINS)}"
        if rng.random() < ctx.cfg.shared_mailbox_rate:  # a family or office address several people use
            self.email = rng.choice(SHARED_MAILBOXES)
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
