"""The machinery every simulated person shares (the event heap, web visitors and sessions, tickets,
e-mail spelling) and the two kinds of people who never buy: anonymous visitors and prospects."""

from __future__ import annotations

import heapq
import json
import math
import random
from bisect import bisect_right
from typing import Any

from crm360.synthetic.model import (
    CATEGORIES,
    EMAIL_DOMAINS,
    ENTRY,
    ENTRY_CUM,
    KEY_TICKET,
    KEY_VISITOR,
    KIND_PROSPECT,
    KIND_VISITOR,
    PAGES,
    STREAM_DIRT,
    STREAM_LIFE,
    SimContext,
    poisson,
    seed_for,
)
from crm360.synthetic.text import (
    DAY,
    FEMALE_NAMES,
    LAST_NAMES,
    MALE_NAMES,
    code40,
    mailbox,
    messy_email,
    mix64,
    permute40,
    pick_offset,
)


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


class OrderState:
    __slots__ = ("oid", "record", "wall", "ordered_s", "status", "channel", "lines", "refund", "updated",
                 "emitted", "amount")


class Entity:
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
            vid = f"v-{permute40(code40(self.kind, self.index, n), KEY_VISITOR):010x}"
            self.visitors.append(_Visitor(vid))
        return self.visitors[k]

    def entry(self) -> str:
        cum = ENTRY_CUM
        return ENTRY[bisect_right(cum, self.rng.random() * cum[-1])]

    def browse_script(self, n: int, entry: str, category: int | None = None) -> list[tuple[str, str, str, int]]:
        """A browsing session: a landing page then pages, products, searches, the odd cart."""
        rng, cat = self.rng, self.ctx.catalogue
        script: list[tuple[str, str, str, int]] = [("page_view", rng.choice(PAGES), entry, 0)]
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
                script.append(("page_view", rng.choice(PAGES), "", 0))
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
        tk.tid = f"T{permute40(code40(self.kind, self.index, seq), KEY_TICKET):013d}"
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


class Anonymous(Entity):
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


class Prospect(Entity):
    """Someone who leaves an e-mail (newsletter sign-up, a service question) and never buys."""

    kind = KIND_PROSPECT

    def __init__(self, ctx: SimContext, index: int, arrival_day: int) -> None:
        super().__init__(ctx, index)
        rng = self.rng
        pool = FEMALE_NAMES + MALE_NAMES
        self.first, self.last = rng.choice(pool), rng.choice(LAST_NAMES)
        self.email = f"{mailbox(self.first)[0]}{mailbox(self.last)}.{index + 1}@{rng.choice(EMAIL_DOMAINS)}"
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
