"""A whole run in one process, walking the declaration (crm360.pipeline.steps): what ``crm360 run``
and ``crm360 backfill`` do, and what the DAGs do task by task."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

from crm360.core import locks
from crm360.core.settings import Settings, get_settings
from crm360.core.warehouse import Warehouse, get_warehouse
from crm360.ingest import ledger
from crm360.pipeline import steps
from crm360.pipeline.run import deployed_systems, record_failure, safe_run_id, summarize
from crm360.pipeline.steps import RunContext
from crm360.serve.report import RunSummary

log = logging.getLogger(__name__)


def run_all(as_of: date, run_id: str, wh: Warehouse | None = None, landing: Path | None = None,
            settings: Settings | None = None) -> RunSummary:
    """The whole pipeline in one process: the steps crm360.pipeline.steps declares, in order, as the
    DAGs run them task by task, with every part of the warehouse held for the whole run."""
    settings = settings or get_settings()
    wh = wh or get_warehouse(settings)
    ctx = RunContext(run_id, as_of, settings=settings, landing=landing)
    steps.execute("migrate_warehouse", wh, ctx)  # before the parts: a migration holds them while it changes
    with locks.holding(wh, locks.EVERY_PART, safe_run_id(run_id), as_of):  # a second run stops or waits here
        with _failure_recorded(wh, run_id, as_of, settings):
            _ingest(wh, ctx)
            _transform(wh, ctx)
        return summarize(wh, run_id, as_of, settings=settings)


def _ingest(wh: Warehouse, ctx: RunContext) -> list[str]:
    """Every source's ingest steps but the migration: the loads, then the raw gate on their batches."""
    batch_ids = ingest_all(wh, ctx.run_id, ctx.landing, ctx.settings, ctx.as_of)
    steps.execute("gate_raw", wh, ctx.with_(batch_ids=tuple(batch_ids)), hold_parts=False)
    return batch_ids


def _transform(wh: Warehouse, ctx: RunContext) -> None:
    """The transform steps but the summary (the caller writes it once the run is whole)."""
    for step in steps.TRANSFORM:
        if step.name != "summarize":
            steps.execute(step.name, wh, ctx, hold_parts=False)


def ingest_all(wh: Warehouse, run_id: str, landing: Path | None = None, settings: Settings | None = None,
               until: date | None = None) -> list[str]:
    """Every deployed source's load step (the systems sources.yml binds), each a batch of its own;
    returns the batch ids. If a source's drops
    cannot be loaded (for whatever reason), the batches this run loaded before it are taken back out
    too: they were never gated, and the next run would skip their files."""
    ctx = RunContext(run_id, until, settings=settings, landing=landing)
    batch_ids: list[str] = []
    try:
        for source in deployed_systems(settings):
            batch_ids += steps.execute("load", wh, ctx.with_(source=source), hold_parts=False)["batch_ids"]
    except BaseException as exc:
        ledger.unload(wh, batch_ids, f"another source of the run failed to load: {str(exc).strip()[:300]}")
        raise
    return batch_ids


@contextmanager
def _failure_recorded(wh: Warehouse, run_id: str, as_of: date, settings: Settings) -> Iterator[None]:
    """A failing run is marked failed and gets its health page, named in the exception."""
    try:
        yield
    except Exception as exc:
        exc.add_note(f"run health report: {record_failure(wh, run_id, as_of, str(exc), settings)}")
        raise


def backfill(start: date, end: date, wh: Warehouse | None = None, landing: Path | None = None,
             settings: Settings | None = None) -> RunSummary:
    """Load history day by day from ``start`` to ``end`` inclusive, then build and publish once.

    Day D loads the drops dated before D as its own batch and gates it, so the
    load ledger records history as the daily schedule would have. The marts are
    built as of ``end`` at the close. Re-running a backfill loads nothing twice.
    """
    if end < start:
        raise ValueError(f"backfill: end {end} is before start {start}")
    settings = settings or get_settings()
    wh = wh or get_warehouse(settings)
    run_id = f"backfill_{start.isoformat()}_{end.isoformat()}"
    ctx = RunContext(run_id, end, settings=settings, landing=landing)
    steps.execute("migrate_warehouse", wh, ctx)
    with locks.holding(wh, locks.EVERY_PART, run_id, end):
        with _failure_recorded(wh, run_id, end, settings):
            day = start
            while day <= end:
                _ingest(wh, ctx.with_(run_id=f"backfill_{day.isoformat()}", as_of=day))
                day += timedelta(days=1)
            _transform(wh, ctx)
        return summarize(wh, run_id, end, settings=settings)
