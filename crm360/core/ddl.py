"""DDL on tables readers may hold: wait a little, try again, then name who is in the way.

Publishing drops ``marts__previous`` and renames schemas; applying an erasure drops
``marts__previous`` and a rejected ``marts__build``; every build starts by dropping
``marts__build``. Dropping a table takes an ACCESS EXCLUSIVE lock, which waits for every
transaction that read the table to end. A BI session left "idle in transaction" on
yesterday's marts keeps its locks when the publication renames them to ``marts__previous``,
and without a limit the next run waits for it as long as it stays open, while every query
that asks for those tables meanwhile queues behind the waiting DDL.

So each try waits at most ``CRM360_DDL_LOCK_TIMEOUT`` seconds (default 2) for its locks
(``lock_timeout``, for that try only), gives back what it took (it runs in a savepoint:
the transaction's other work stays), pauses and tries again, ``CRM360_DDL_LOCK_TRIES``
times in all (default 5, about 20 s). While a try waits, a connection of its own asks
``pg_blocking_pids`` whom it waits for. When the tries are spent the step fails with
:class:`ObjectBusy`, which is retryable (the other transaction will end, or someone ends
it) and names each blocking session: pid, user, application, client, since when its
transaction is open and what it is doing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import psycopg

from crm360.core.errors import Crm360Error
from crm360.core.settings import Settings, get_settings
from crm360.core.warehouse import Warehouse

log = logging.getLogger(__name__)

TIMEOUT_ENV = Settings.env_name("ddl_lock_timeout")
TRIES_ENV = Settings.env_name("ddl_lock_tries")
POLL_SECONDS = 0.05

T = TypeVar("T")


class ObjectBusy(Crm360Error):
    """Another session holds locks the step's DDL needs, past every try; it ends, so a retry may pass."""

    retryable = True


def lock_timeout() -> float:
    """Seconds one try waits for its locks (CRM360_DDL_LOCK_TIMEOUT)."""
    return get_settings().ddl_lock_timeout


def tries() -> int:
    """How many times the DDL is tried before the step gives up (CRM360_DDL_LOCK_TRIES)."""
    return get_settings().ddl_lock_tries


@dataclass(frozen=True)
class Blocker:
    """A session another one waits for, as pg_stat_activity describes it."""

    pid: int
    user: str | None
    application: str | None
    client: str | None
    transaction_start: datetime | None
    state: str | None
    state_since: datetime | None

    def describe(self) -> str:
        parts = [f"user {self.user or '?'}", f"application {self.application or ''!r}",
                 f"client {self.client or 'local socket'}"]
        if self.transaction_start is not None:
            parts.append(f"transaction open since {_utc(self.transaction_start)}")
        if self.state:
            parts.append(self.state + (f" since {_utc(self.state_since)}" if self.state_since else ""))
        return f"pid {self.pid} ({', '.join(parts)})"


def _utc(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


# whom a backend waits for, and what they are (not their query: it may quote anybody's data)
BLOCKERS = """
    select pid, usename, application_name, coalesce(client_hostname, host(client_addr)), xact_start, state,
           state_change
    from pg_stat_activity where pid = any(pg_blocking_pids(%s)) order by pid
"""


class _Watch:
    """While a try waits, ask on a connection of its own whom the try's backend waits for."""

    def __init__(self, wh: Warehouse, pid: int):
        self.wh, self.pid = wh, pid
        self.seen: dict[int, Blocker] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="crm360-ddl-watch", daemon=True)

    def _poll(self) -> None:
        try:
            with self.wh.connect(autocommit=True) as conn:
                self._ready.set()
                while not self._stop.wait(POLL_SECONDS):
                    for row in conn.execute(BLOCKERS, (self.pid,)).fetchall():
                        self.seen[row[0]] = Blocker(*row)
        except psycopg.Error as exc:  # naming the blockers is a courtesy: the DDL goes on without it
            log.warning("could not watch for sessions blocking backend %d: %s", self.pid, str(exc).strip())
        finally:
            self._ready.set()

    def __enter__(self) -> _Watch:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def run(wh: Warehouse, conn: psycopg.Connection, what: str, action: Callable[[], T]) -> T:
    """Run ``action()`` (statements on ``conn``) with a short lock_timeout, tried again while another
    session holds what it needs. Inside ``conn``'s open transaction each try is a savepoint, so
    the transaction's earlier work stays; on an idle connection each try is a transaction.
    ``what`` starts the message of :class:`ObjectBusy`: the step, and what it was doing."""
    timeout, attempts = lock_timeout(), tries()
    seen: dict[int, Blocker] = {}
    for attempt in range(1, attempts + 1):
        with _Watch(wh, conn.info.backend_pid) as watch:
            try:
                with conn.transaction():  # a lock timeout gives back this try's locks only
                    previous = conn.execute("select current_setting('lock_timeout')").fetchone()[0]
                    conn.execute("select set_config('lock_timeout', %s, true)", (f"{int(timeout * 1000)}ms",))
                    result = action()
                    conn.execute("select set_config('lock_timeout', %s, true)", (previous,))
                return result
            except psycopg.errors.LockNotAvailable:
                seen.update(watch.seen)
        log.info("%s: locks not granted within %gs (try %d of %d)%s", what, timeout, attempt, attempts,
                 f", waiting for {', '.join(str(pid) for pid in sorted(watch.seen))}" if watch.seen else "")
        if attempt < attempts:
            time.sleep(min(0.5 * 2 ** (attempt - 1), 5.0))
    who = ("; ".join(b.describe() for b in seen.values()) if seen
           else "sessions that ended before they could be named")
    hint = (f"; end that transaction (or the session: select pg_terminate_backend({min(seen)}))" if len(seen) == 1
            else "; end those transactions" if seen else "")
    raise ObjectBusy(f"{what}: the locks it needs were not granted in {attempts} tries of {timeout:g}s, "
                     f"blocked by {who}{hint}; the step is retried")
