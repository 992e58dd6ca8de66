"""The pipeline, declared once: its steps in order, what each writes, and how one is run.

    ingest (per source system):  migrate_warehouse -> load -> gate_raw
    transform:                   source_freshness -> apply_erasures -> dbt_build -> gate_marts -> publish
                                 -> summarize

Every entry point walks this declaration: the Airflow DAGs make a task per step (the step's name
is the task id, its doc the task's), ``crm360 run`` and ``crm360 backfill`` run the steps in
order in one process (crm360.pipeline.run), the benchmarks time them. A step takes the
warehouse and a :class:`RunContext`; it declares the parts of the warehouse it writes
(crm360.core.locks), which :func:`execute` holds while it runs; whether a failure is worth a
retry is the error's own say (crm360.core.errors).

Nothing heavy is imported here: the DAG files read the declaration when Airflow parses them.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from crm360.core.systems import SYSTEMS


@dataclass(frozen=True)
class RunContext:
    """What a step needs to know of its run."""

    run_id: str  # as the caller names the run (an Airflow run id, cli_<date>, ...)
    as_of: date | None = None  # the run's date: drops before it are loaded, tiers are as of it
    source: str | None = None  # a per-source step's source system
    batch_ids: tuple[str, ...] = ()  # the batches a raw gate checks
    settings: Any = None  # crm360.core.settings.Settings; None: the environment's
    landing: Path | None = None  # where the drops are; None: the settings'

    def with_(self, **changes) -> RunContext:
        return replace(self, **changes)


def _ingest_part(ctx: RunContext) -> tuple[str, ...]:
    return (f"ingest:{ctx.source}",)


def _batch_parts(ctx: RunContext) -> tuple[str, ...]:
    return tuple(sorted({f"ingest:{b.rsplit(':', 1)[-1]}" for b in ctx.batch_ids}))


def _marts(ctx: RunContext) -> tuple[str, ...]:
    return ("marts",)


def _everything(ctx: RunContext) -> tuple[str, ...]:
    return (*(f"ingest:{s}" for s in SYSTEMS), "marts")


def _nothing(ctx: RunContext) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class Step:
    name: str  # the Airflow task id too
    doc: str
    action: str  # the function of crm360.pipeline.run that does it: (warehouse, context) -> result
    parts: Callable[[RunContext], tuple[str, ...]] = field(default=_nothing)  # what it writes
    checks_schema: bool = True  # migrate is the one step a warehouse older than the code may run

    def __call__(self, wh, ctx: RunContext):
        from crm360.pipeline import run

        return getattr(run, self.action)(wh, ctx)


INGEST = (
    Step("migrate_warehouse", "Apply the schema migrations the warehouse lacks (crm360 migrate), under their lock.",
         "migrate_step", checks_schema=False),
    Step("load", "COPY the source's new or changed drops dated before the as-of date into raw, as one attempt.",
         "load_step", parts=_ingest_part),
    Step("gate_raw", "Great Expectations suites on the batch; a failure takes it back out. Passing lets builds "
         "read it.", "gate_raw_step", parts=_batch_parts),
)
TRANSFORM = (
    Step("source_freshness", "Each bound source's last load against dbt's freshness thresholds; fails the run "
         "only if configured to.",
         "freshness_step"),
    Step("apply_erasures", "Remove people whose data must be forgotten from every layer, before dbt reads raw.",
         "erase_step", parts=_everything),
    Step("dbt_build", "dbt build (models, then their tests) into the unpublished marts schema.", "transform_step",
         parts=_marts),
    Step("gate_marts", "Great Expectations suites on the built, not yet published marts.", "gate_marts_step",
         parts=_marts),
    Step("publish", "Swap the gated marts in for readers, in one transaction.", "publish_step", parts=_marts),
    Step("summarize", "Record rows per mart, the pyramid, gate results and the health page.", "summarize_step"),
)
STEPS = {step.name: step for step in (*INGEST, *TRANSFORM)}
SOURCES = SYSTEMS


def get(name: str) -> Step:
    try:
        return STEPS[name]
    except KeyError:
        raise KeyError(f"no step {name!r}; the pipeline's steps are {', '.join(STEPS)}") from None


def execute(name: str, wh, ctx: RunContext, hold_parts: bool = True):
    """Run one step: check the warehouse's schema (but for migrate), hold the parts it writes (unless
    the caller holds them: a whole run holds every part), and return its result."""
    from crm360.core import locks, schema
    from crm360.pipeline.run import safe_run_id

    step = get(name)
    if step.checks_schema:
        schema.require_current(wh)
    parts = step.parts(ctx) if hold_parts else ()
    holder = locks.holding(wh, parts, safe_run_id(ctx.run_id), ctx.as_of) if parts else nullcontext()
    with holder:
        return step(wh, ctx)
