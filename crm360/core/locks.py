"""Run locks: two runs never write the same part of the warehouse at once.

A lock is a PostgreSQL session advisory lock, held on a connection of its own for
as long as the run (or the Airflow task) writes. PostgreSQL scopes advisory locks
to the database, so runs against different warehouses never wait for each other,
and a process that dies loses its connection and with it the lock: nothing has to
be cleaned up by hand.

The parts:

- ``ingest:<source>``: loading a source and gating its batch;
- ``marts``: the dbt build, the marts gate and the publication. One build schema
  serves every run, so two builds must not overlap, whatever their dates.

``run_all`` and ``backfill`` hold every part for their whole run; an Airflow task holds
the parts its step declares it writes (crm360.pipeline.steps; applying erasures writes them
all). Airflow's ``max_active_runs=1`` keeps two runs of one DAG apart already; the lock keeps a
CLI run and a DAG run apart.

A run that finds a part taken waits up to ``CRM360_RUN_LOCK_WAIT`` seconds
(default 0: it stops at once) and then fails with :class:`RunLocked`, whose message
names the run holding the part, its date, since when and its process.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime

import psycopg

from crm360.core.errors import Crm360Error
from crm360.core.settings import Settings, get_settings
from crm360.core.systems import SYSTEMS
from crm360.core.warehouse import Warehouse

log = logging.getLogger(__name__)

WAIT_ENV = Settings.env_name("run_lock_wait")
MARTS = "marts"
EVERY_PART = (*(f"ingest:{s}" for s in SYSTEMS), MARTS)
_NAMESPACE = "crm360.run"  # first key of the two-key advisory locks: apart from the loader's per-file locks

class RunLocked(Crm360Error):
    """Another run holds a part of the warehouse this run must write; it ends, so a retry may pass."""

    retryable = True


def wait_seconds() -> float:
    """CRM360_RUN_LOCK_WAIT (crm360.core.settings)."""
    return get_settings().run_lock_wait


def part_for_batch(batch_id: str) -> str:
    """The part a raw batch belongs to (batch ids end in ``:<source>``)."""
    return f"ingest:{batch_id.rsplit(':', 1)[-1]}"


@contextmanager
def holding(wh: Warehouse, parts: Sequence[str], run_id: str, as_of: date | None,
            wait: float | None = None) -> Iterator[None]:
    """Hold ``parts`` of ``wh`` for the block. Parts are taken in one order, so two
    holders of several parts cannot deadlock. Raises :class:`RunLocked` if a part
    is still taken after ``wait`` seconds (default: ``CRM360_RUN_LOCK_WAIT``)."""
    wait = wait_seconds() if wait is None else wait
    parts = sorted(set(parts))
    with wh.connect(autocommit=True) as conn:
        for part in parts:
            _take(conn, part, run_id, wait)
        now = datetime.now(UTC)
        # who holds what, for the message a second run gets (a warehouse not yet migrated has no table)
        recorded = conn.execute("select to_regclass('audit.run_locks') is not null").fetchone()[0]
        for part in parts if recorded else ():
            conn.execute(
                """insert into audit.run_locks (part, run_id, as_of_date, host, pid, backend_pid, since)
                   values (%s, %s, %s, %s, %s, pg_backend_pid(), %s)
                   on conflict (part) do update set run_id = excluded.run_id, as_of_date = excluded.as_of_date,
                       host = excluded.host, pid = excluded.pid, backend_pid = excluded.backend_pid,
                       since = excluded.since""",
                (part, run_id, as_of, socket.gethostname(), os.getpid(), now))
        log.info("run %s holds %s", run_id, ", ".join(parts))
        try:
            yield
        finally:
            lost = release_all(conn)
            if lost:  # the error that ended the block, if any, is the one to report
                log.warning("run %s: the lock session was lost before release (%s)", run_id, lost)


def release_all(conn: psycopg.Connection) -> str | None:
    """Release every advisory lock ``conn``'s session holds. A session that ended under us (a
    server restart) took its locks with it: that is no error, and its reason is returned."""
    if conn.closed or conn.broken:
        return None
    try:
        conn.execute("select pg_advisory_unlock_all()")
    except psycopg.OperationalError as exc:
        return str(exc).strip()
    return None


def _take(conn: psycopg.Connection, part: str, run_id: str, wait: float) -> None:
    key = (_NAMESPACE, part)
    if wait <= 0:
        if conn.execute("select pg_try_advisory_lock(hashtext(%s), hashtext(%s))", key).fetchone()[0]:
            return
    else:
        try:
            with conn.transaction():
                conn.execute(f"set local lock_timeout = {int(wait * 1000)}")
                conn.execute("select pg_advisory_lock(hashtext(%s), hashtext(%s))", key)
            return
        except psycopg.errors.LockNotAvailable:
            pass
    conn.execute("select pg_advisory_unlock_all()")  # the parts taken so far
    raise RunLocked(_busy_message(conn, part, run_id, wait))


def _busy_message(conn: psycopg.Connection, part: str, run_id: str, wait: float) -> str:
    if not conn.execute("select to_regclass('audit.run_locks') is not null").fetchone()[0]:
        return f"run {run_id} cannot start {part}: another crm360 run holds it (the warehouse is being migrated)"
    holder = conn.execute(
        """select l.run_id, l.as_of_date, l.since, l.pid, l.host
           from audit.run_locks as l
           join pg_locks as p on p.locktype = 'advisory' and p.pid = l.backend_pid and p.granted
               and p.database = (select oid from pg_database where datname = current_database())
               and p.classid::int = hashtext(%s) and p.objid::int = hashtext(l.part) and p.objsubid = 2
           where l.part = %s""", (_NAMESPACE, part)).fetchone()
    waited = f" after waiting {wait:g}s" if wait > 0 else ""
    hint = f"; set {WAIT_ENV} to wait for it" if wait <= 0 else ""
    if holder is None:  # it has the lock but has not yet said who it is
        who = "another crm360 run"
    else:
        other, as_of, since, pid, host = holder
        who = (f"another crm360 run ({other}, for {as_of.isoformat() if as_of else 'no date'}) has held it since "
               f"{since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC (pid {pid} on {host})")
    return f"run {run_id} cannot start {part}{waited}: {who}{hint}"
