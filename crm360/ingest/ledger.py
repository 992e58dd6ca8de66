"""Load attempts: which rows of raw came from which attempt, and taking an attempt back out.

A **batch is one attempt** to load a source (``<run>.<n>:<source>``, the n-th attempt of that
run for that source). It is recorded in ``audit.load_attempts`` before its first row is
written, with the one ``_loaded_at`` every row it writes carries (the database's clock, so
machines with different clocks agree), and moves through

    loading -> loaded -> gated            (its raw gate passed: builds may read it)
                      -> unloaded         (a file failed, or its gate did: taken back out)

A file already in the ledger is *replaced* by loading it again: its rows and ledger entry (put
there by a gated attempt) are moved to ``raw._replaced`` and ``audit.load_files_replaced`` in
the file's own transaction, and kept there until the replacing attempt passes its gate.
Unloading an attempt deletes exactly its rows and ledger entries and puts back what it
replaced, as a *restore* attempt of its own (already gated, loaded now: the next build sees the
file changed). So a failed attempt never takes away what an earlier attempt loaded and gated.

An attempt a run left ``loading``, ``loaded`` or ``failed`` (the process died, its gate never
ran) is unloaded by the next attempt for the same source, which holds that source's run lock.

Builds read a source's raw rows only from gated attempts loaded before the source's *horizon*:
the ``_loaded_at`` of its oldest attempt still unsettled (or now). An attempt in progress, or
waiting for its gate, reaches no model; when it is gated, its rows are newer than anything a
build has read, so the next build picks them up (crm360.pipeline.run.transform, the dbt macros in
``macros/incremental.sql``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from crm360.core import locks
from crm360.core.warehouse import Warehouse
from crm360.ingest.sources import CONTRACT

log = logging.getLogger(__name__)

UNSETTLED = ("loading", "loaded", "failed")
# One per raw table, taken in shared mode by a load that replaces a file of the table and exclusively
# by a build while dbt reads raw: a replacement waits for the build (it deletes rows the build may
# still read) and a build for the replacements under way; new files never wait, nor do replacements
# for each other (builds are one at a time anyway: the marts lock). Two-key advisory locks: apart
# from the loaders' one-key locks per file.
RAW_READ_LOCK = "crm360.raw_read"


@dataclass(frozen=True)
class Attempt:
    batch_id: str
    source: str
    run_id: str
    number: int
    loaded_at: datetime
    # attempts of the source another run loaded and left waiting for their gate: this attempt's gate
    # checks them too (their files are in the ledger, so this attempt skips them)
    adopted: tuple[str, ...] = ()


def _tables(source: str) -> list[str]:
    return [t.table for t in CONTRACT[source]]


def begin(wh: Warehouse, source: str, run_id: str | None = None, batch_id: str | None = None,
          loaded_at: datetime | None = None) -> Attempt:
    """Record a new attempt to load ``source`` (status loading). As the next attempt of ``run_id``
    (``<run_id>.<n>:<source>``, n one more than the run's attempts so far), it first settles what
    other runs left of the source: the caller holds the source's run lock (crm360.core.locks), so no
    other attempt of it is in progress. An attempt left loading (its process died mid-load) or
    failed (its unload did not finish) is unloaded; one that loaded and waits for its gate is
    adopted: this attempt's gate checks it too (its own gate may still come: gating twice is
    harmless). With ``batch_id``, a caller names its batch and settles it itself."""
    if batch_id is None and run_id is None:
        raise ValueError("an attempt needs a run id or a batch id")
    leftovers, adopted = [], []
    if batch_id is None:
        with wh.connect() as conn:
            for other, status in conn.execute(
                    "select batch_id, status from audit.load_attempts where source = %s and status = any(%s) "
                    "order by loaded_at", (source, list(UNSETTLED))).fetchall():
                (adopted if status == "loaded" else leftovers).append(other)
    if leftovers:
        log.warning("%s: unloading attempt(s) left unsettled by an earlier run: %s", source, ", ".join(leftovers))
        unload(wh, leftovers, "left unsettled by an earlier run; unloaded by the next attempt")
    with wh.connect() as conn:
        if batch_id is not None:
            row = conn.execute(
                """insert into audit.load_attempts (batch_id, source, run_id, attempt, loaded_at, status)
                   values (%s, %s, %s, 1, coalesce(%s, clock_timestamp()), 'loading')
                   on conflict (batch_id) do update set status = 'loading', loaded_at = excluded.loaded_at,
                       started_at = now(), finished_at = null, files = 0, row_count = 0, replaced_files = 0,
                       message = null
                   returning batch_id, run_id, attempt, loaded_at""",
                (batch_id, source, run_id or batch_id.rsplit(":", 1)[0], loaded_at)).fetchone()
        else:
            conn.execute("select pg_advisory_xact_lock(hashtext('crm360.attempt'), hashtext(%s))", (run_id,))
            number = conn.execute("select coalesce(max(attempt), 0) + 1 from audit.load_attempts "
                                  "where run_id = %s and source = %s", (run_id, source)).fetchone()[0]
            row = conn.execute(
                """insert into audit.load_attempts (batch_id, source, run_id, attempt, loaded_at, status)
                   values (%s, %s, %s, %s, coalesce(%s, clock_timestamp()), 'loading')
                   returning batch_id, run_id, attempt, loaded_at""",
                (f"{run_id}.{number}:{source}", source, run_id, number, loaded_at)).fetchone()
        conn.commit()
    return Attempt(row[0], source, row[1], row[2], row[3], tuple(adopted))


def hold_replaced(conn: psycopg.Connection, source: str, table: str, source_file: str, batch_id: str) -> bool:
    """In a file's load transaction, before its rows are deleted: if an earlier attempt loaded the
    file, keep its rows (and its quarantined records) and its ledger entry aside until this attempt
    is gated. Returns whether the file is a replacement. Takes the table's raw-read lock first: a
    replacement deletes rows a running build may still read, so it waits for the build."""
    previous = conn.execute(
        "select batch_id, sha256, row_count, loaded_at from audit.load_files where source = %s and source_file = %s",
        (source, source_file)).fetchone()
    if previous is None or previous[0] == batch_id:
        return False
    conn.execute("select pg_advisory_xact_lock_shared(hashtext(%s), hashtext(%s))", (RAW_READ_LOCK, table))
    conn.execute(
        """insert into audit.load_files_replaced
               (batch_id, source, source_file, sha256, row_count, previous_batch_id, loaded_at)
           values (%s, %s, %s, %s, %s, %s, %s) on conflict do nothing""",
        (batch_id, source, source_file, previous[1], previous[2], previous[0], previous[3]))
    conn.execute(sql.SQL("insert into raw._replaced (batch_id, table_name, source_file, row) "
                         "select %s, %s, %s, to_jsonb(t) from {} as t where t._source_file = %s").format(
                             sql.Identifier("raw", table)), (batch_id, table, source_file, source_file))
    conn.execute("insert into raw._replaced (batch_id, table_name, source_file, row) "
                 "select %s, '_quarantine', %s, to_jsonb(q) from raw._quarantine as q where q.source_file = %s",
                 (batch_id, source_file, source_file))
    return True


def finish(wh: Warehouse, batch_id: str, files: int, rows: int, replaced: int) -> None:
    """The attempt loaded what it had to: it waits for its raw gate."""
    with wh.connect() as conn:
        conn.execute("update audit.load_attempts set status = 'loaded', finished_at = now(), files = %s, "
                     "row_count = %s, replaced_files = %s where batch_id = %s", (files, rows, replaced, batch_id))
        conn.commit()


def gated(wh: Warehouse, batch_ids: list[str]) -> None:
    """The attempts passed their raw gate: builds may read them; what they replaced is let go."""
    if not batch_ids:
        return
    with wh.connect() as conn:
        conn.execute("update audit.load_attempts set status = 'gated' where batch_id = any(%s) "
                     "and status in ('loading', 'loaded')", (batch_ids,))
        conn.execute("delete from raw._replaced where batch_id = any(%s)", (batch_ids,))
        conn.execute("delete from audit.load_files_replaced where batch_id = any(%s)", (batch_ids,))
        conn.commit()


def unload(wh: Warehouse, batch_ids: list[str], reason: str, including_gated: bool = False) -> dict[str, int]:
    """Take attempts back out: delete exactly their rows, quarantined records and ledger entries,
    and put back what each replaced (as a gated restore attempt loaded now). An attempt already
    gated is left alone (what passed its gate stays) unless ``including_gated`` (an operator taking a
    batch out by hand): then a gated marker records the removal, so the next build rebuilds the
    source's incremental models instead of keeping the rows it built from it. Returns rows removed
    per table."""
    removed: dict[str, int] = {}
    if not batch_ids:
        return removed
    statuses = ["loading", "loaded", "failed", "unloaded"] + (["gated"] if including_gated else [])
    with wh.connect() as conn, conn.transaction():
        attempts = conn.execute(
            "select batch_id, source, run_id, attempt, loaded_at, status, files from audit.load_attempts "
            "where batch_id = any(%s) and status = any(%s) order by loaded_at for update",
            (batch_ids, statuses)).fetchall()
        known = {a[0] for a in attempts}
        # batches named by a caller but never recorded as attempts (tests, older tools): by batch id alone
        strays = [b for b in batch_ids if b not in known and not _recorded(conn, b)]
        for batch_id, source, run_id, number, loaded_at, status, files in attempts:
            _delete_attempt(conn, batch_id, source if source in CONTRACT else None, loaded_at, removed)
            _restore(conn, batch_id, source, run_id, number)
            conn.execute("update audit.load_attempts set status = 'unloaded', finished_at = now(), message = %s "
                         "where batch_id = %s", (reason[:2000], batch_id))
            if status == "gated":
                conn.execute(
                    """insert into audit.load_attempts (batch_id, source, run_id, attempt, loaded_at, status,
                                                        finished_at, replaced_files, restores, message)
                       values (%s, %s, %s, %s, clock_timestamp(), 'gated', now(), greatest(%s, 1), %s, %s)
                       on conflict (batch_id) do nothing""",
                    (f"{batch_id.rsplit(':', 1)[0]}.unload:{source}", source, run_id, number, files, batch_id,
                     f"marks the removal of {batch_id}, gated before: {reason}"[:2000]))
        for batch_id in strays:
            source = batch_id.rsplit(":", 1)[-1]
            _delete_attempt(conn, batch_id, source if source in CONTRACT else None, None, removed)
    log.warning("unloaded %s (%s): %s", ", ".join(batch_ids), reason, removed)
    return removed


def _recorded(conn: psycopg.Connection, batch_id: str) -> bool:
    return conn.execute("select 1 from audit.load_attempts where batch_id = %s", (batch_id,)).fetchone() is not None


def _delete_attempt(conn: psycopg.Connection, batch_id: str, source: str | None, loaded_at: datetime | None,
                    removed: dict[str, int]) -> None:
    """Delete one attempt's rows; its rows all carry its ``_loaded_at``, which the BRIN index finds."""
    conn.execute("delete from raw._quarantine where _batch_id = %s", (batch_id,))
    tables = _tables(source) if source else [t.table for tables in CONTRACT.values() for t in tables]
    for table in tables:
        where = sql.SQL("_batch_id = %s") if loaded_at is None else sql.SQL("_loaded_at = %s and _batch_id = %s")
        params = (batch_id,) if loaded_at is None else (loaded_at, batch_id)
        cur = conn.execute(sql.SQL("delete from {} where {}").format(sql.Identifier("raw", table), where), params)
        if cur.rowcount:
            removed[table] = removed.get(table, 0) + cur.rowcount
    conn.execute("delete from audit.load_files where batch_id = %s", (batch_id,))


def _restore(conn: psycopg.Connection, batch_id: str, source: str, run_id: str, number: int) -> None:
    """Put back the files ``batch_id`` replaced, as a gated attempt of their own loaded now."""
    held = conn.execute("select source_file, sha256, row_count, previous_batch_id from audit.load_files_replaced "
                        "where batch_id = %s order by source_file", (batch_id,)).fetchall()
    if not held:
        conn.execute("delete from raw._replaced where batch_id = %s", (batch_id,))
        return
    restore = f"{batch_id.rsplit(':', 1)[0]}.restore:{source}"
    loaded_at = conn.execute(
        """insert into audit.load_attempts (batch_id, source, run_id, attempt, loaded_at, status, finished_at,
                                            files, row_count, replaced_files, restores, message)
           values (%s, %s, %s, %s, clock_timestamp(), 'gated', now(), %s, %s, %s, %s,
                   'the files this attempt replaced, put back when it was unloaded')
           returning loaded_at""",
        (restore, source, run_id, number, len(held), sum(r[2] for r in held), len(held), batch_id)).fetchone()[0]
    tables = [r[0] for r in conn.execute("select distinct table_name from raw._replaced where batch_id = %s",
                                         (batch_id,)).fetchall()]
    for table in tables:  # each row as it was, with the restore's batch and time
        target = sql.Identifier("raw", table)
        conn.execute(sql.SQL("insert into {t} select (jsonb_populate_record(null::{t}, r.row || jsonb_build_object("
                             "'_batch_id', %s::text, '_loaded_at', %s::timestamptz))).* "
                             "from raw._replaced as r where r.batch_id = %s and r.table_name = %s").format(t=target),
                     (restore, loaded_at, batch_id, table))
    conn.execute(
        """insert into audit.load_files (source, source_file, sha256, row_count, batch_id, loaded_at)
           select source, source_file, sha256, row_count, %s, %s from audit.load_files_replaced
           where batch_id = %s""", (restore, loaded_at, batch_id))
    conn.execute("delete from raw._replaced where batch_id = %s", (batch_id,))
    conn.execute("delete from audit.load_files_replaced where batch_id = %s", (batch_id,))
    log.info("put back %d file(s) that %s had replaced, as %s", len(held), batch_id, restore)


@contextmanager
def reading_raw(wh: Warehouse) -> Iterator[None]:
    """Hold every raw table's raw-read lock for the block (a build): loads that replace a file wait
    until it ends; new files load meanwhile."""
    tables = [t.table for tables in CONTRACT.values() for t in tables]
    with wh.connect(autocommit=True) as conn:
        for table in sorted(tables):
            conn.execute("select pg_advisory_lock(hashtext(%s), hashtext(%s))", (RAW_READ_LOCK, table))
        try:
            yield
        finally:
            locks.release_all(conn)  # a session that is gone took its locks with it


def horizons(wh: Warehouse) -> dict[str, str]:
    """Per source, the load time before which every attempt is settled (now, when none is pending):
    a build reads that source's rows of gated attempts loaded before it."""
    with wh.connect() as conn:
        rows = dict(conn.execute(
            """select s.source, least(now(), (select min(a.loaded_at) from audit.load_attempts as a
                                                where a.source = s.source and a.status = any(%s)))::text
               from unnest(%s::text[]) as s(source)""", (list(UNSETTLED), list(CONTRACT))).fetchall())
    return rows


def horizons_json(wh: Warehouse) -> str:
    return json.dumps(horizons(wh), sort_keys=True)
