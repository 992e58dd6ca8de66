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

The simulation lives in four modules: ``model`` (parameters, seeds, record types, the
catalogue, the sink, the run's context), ``entity`` (what every person shares; anonymous
visitors and prospects), ``shopper`` (what buyers share; guest-only buyers) and
``registered`` (registered customers). This module picks the entity for a (kind, index).
"""

from __future__ import annotations

from crm360.synthetic.entity import Anonymous, Entity, Prospect
from crm360.synthetic.model import KIND_GUEST, KIND_PROSPECT, KIND_REGISTERED, SimContext
from crm360.synthetic.registered import Registered
from crm360.synthetic.shopper import GuestOnly


def make_entity(ctx: SimContext, kind: int, index: int, arrival_day: int | None) -> Entity:
    """The person of that kind and index; ``arrival_day`` is None for one who exists before day 0."""
    if kind == KIND_REGISTERED:
        return Registered(ctx, index, arrival_day)
    if kind == KIND_GUEST:
        return GuestOnly(ctx, index, arrival_day or 0)
    if kind == KIND_PROSPECT:
        return Prospect(ctx, index, arrival_day or 0)
    return Anonymous(ctx, index, arrival_day or 0)
