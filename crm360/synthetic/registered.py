"""Registered customers: a profile, a lifecycle (active, churned, won back), orders, service contacts
and follow-up calls, and web visits."""

from __future__ import annotations

import math
from typing import Any

from crm360.synthetic.entity import OrderState
from crm360.synthetic.model import (
    CALL_EFFECT_DAYS,
    CALL_RATE_BOOST,
    CALL_WINDOW_DAYS,
    CHANNEL_CHURN,
    CHANNEL_WEIGHTS,
    CHANNELS,
    COMPLAINT_HAZARD,
    COUNTRY_FREQUENCY,
    EMAIL_DOMAINS,
    INCOME_BANDS,
    INCOME_FREQUENCY,
    KIND_REGISTERED,
    LIFETIME_DAYS,
    OCCUPATIONS,
    PREHISTORY_DAYS,
    PURCHASE_STATUSES,
    W_MEAN,
    WINBACK_SHARE,
    FollowUp,
    SimContext,
    poisson,
)
from crm360.synthetic.shopper import Shopper
from crm360.synthetic.text import (
    DAY,
    LAST_NAMES,
    mailbox,
    to_date,
)


class Registered(Shopper):
    """A registered customer: profile, lifecycle (active, churned, won back), orders, service, web."""

    kind = KIND_REGISTERED

    def __init__(self, ctx: SimContext, index: int, arrival_day: int | None) -> None:
        super().__init__(ctx, index)
        cfg, rng = ctx.cfg, self.rng
        self.reg_id = f"C{index + 1:07d}"
        self.draw_person()
        self.email = f"{mailbox(self.first)}.{mailbox(self.last)}.{index + 1}@{rng.choice(EMAIL_DOMAINS)}"
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
        ch = rng.choices(range(len(CHANNELS)), CHANNEL_WEIGHTS)[0]
        self.channel = CHANNELS[ch]
        self.consent = rng.random() < 0.55
        self.gender_out = "" if rng.random() < 0.1 else self.gender
        self.web_share = 0.35 if self.channel == "store" else 0.45 if age > 62 else 0.75
        young, old = age < 25, age > 62
        # how much and how often: Pareto weights carry the revenue concentration
        self.weight = min(rng.paretovariate(1.16), 60.0)
        self.buyer = rng.random() >= 0.15
        self.base_rate = (cfg.orders_per_customer_year / 365 / DAY * self.weight / W_MEAN
                          * INCOME_FREQUENCY[self.band] * COUNTRY_FREQUENCY[self.country.code]
                          * (0.85 if young else 1.0)) if self.buyer else 0.0
        self.session_rate = (cfg.sessions_per_customer_year / 365 / DAY * (0.45 + 0.55 * math.sqrt(
            min(self.weight, 20) / W_MEAN)) * (1.35 if young else 0.6 if old else 1.0))
        self.hazard = 1 / (LIFETIME_DAYS * DAY) * CHANNEL_CHURN[ch] * (1.2 if young else 0.85 if old else 1.0)
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

    def _on_complaint(self, t: float, o: OrderState) -> None:
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
