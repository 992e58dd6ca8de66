"""The warehouse's schema: versioned migrations, applied by one command, checked by every step.

Everything crm360 itself owns in the warehouse (schemas, raw and quarantine tables, the
audit tables, the predictions table, indexes, functions, roles and grants) is created and
changed only by the numbered alembic revisions in ``crm360/core/migrations/versions/``, applied
by ``crm360 migrate`` (:func:`migrate`). dbt owns what it builds in staging, intermediate and
the marts. Loads, gates and builds run no DDL on crm360's objects: they check the warehouse's
revision first (:func:`require_current`) and stop at once, naming the command to run, when
the warehouse is older (or newer) than the code.

``migrate`` holds an advisory lock for the whole upgrade, so any number of processes may run
it at once (three ingest DAGs starting together, an init container and a CLI): one applies
the revisions, the others wait and find nothing left to do. While revisions are applied it
also holds every run part (crm360.core.locks), so no load or build writes under a changing schema.
All revisions run in one transaction: a failed migration leaves the warehouse as it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import psycopg
from psycopg import sql

from crm360.core.errors import Crm360Error, is_retryable
from crm360.core.settings import get_settings
from crm360.core.warehouse import Warehouse

log = logging.getLogger(__name__)

VERSION_SCHEMA = "audit"
VERSION_TABLE = "schema_version"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_LOCK = "crm360.migrate"
COMMAND = "crm360 migrate"
# the oldest PostgreSQL crm360's SQL runs on (bit_xor, in the identity graph's edge digests, came in 14)
MIN_SERVER_VERSION = 140000


class WarehouseOutdated(Crm360Error):
    """The warehouse's schema is not the revision this code was written for."""


class MigrationError(Crm360Error):
    """A migration could not be applied; nothing of it was."""


class ServerTooOld(Crm360Error):
    """The warehouse's PostgreSQL is older than crm360's SQL needs."""


def require_server_version(version_num: int, where: str) -> None:
    """Stop, naming the server's version and the oldest one crm360 runs on, below MIN_SERVER_VERSION
    (``version_num`` as PostgreSQL's server_version_num: 150004 for 15.4, 90624 for 9.6.24)."""
    if version_num < MIN_SERVER_VERSION:
        def name(n: int) -> str:
            return f"{n // 10000}.{n % 10000}" if n >= 100000 else f"{n // 10000}.{n // 100 % 100}.{n % 100}"
        raise ServerTooOld(f"the warehouse ({where}) runs PostgreSQL {name(version_num)}; crm360 needs "
                           f"{MIN_SERVER_VERSION // 10000} or newer")


@dataclass(frozen=True)
class MigrationResult:
    before: str | None
    after: str
    applied: tuple[str, ...]

    def describe(self) -> str:
        if not self.applied:
            return f"the warehouse is at revision {self.after}, the latest: nothing to do"
        return (f"migrated the warehouse from revision {self.before or '(empty)'} to {self.after} "
                f"({', '.join(self.applied)})")


def _config():
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@cache
def _script():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The revision this code needs."""
    heads = _script().get_heads()
    if len(heads) != 1:
        raise MigrationError(f"the migrations have {len(heads)} heads ({', '.join(heads)}): merge them")
    return heads[0]


def revisions() -> list[str]:
    """Every revision, oldest first."""
    return [s.revision for s in reversed(list(_script().walk_revisions()))]


def current(conn: psycopg.Connection) -> str | None:
    """The warehouse's revision, or None if crm360 never migrated it."""
    table = f"{VERSION_SCHEMA}.{VERSION_TABLE}"
    if not conn.execute("select to_regclass(%s) is not null", (table,)).fetchone()[0]:
        return None
    row = conn.execute(sql.SQL("select version_num from {}").format(
        sql.Identifier(VERSION_SCHEMA, VERSION_TABLE))).fetchone()
    return row[0] if row else None


def require_current(wh: Warehouse) -> None:
    """Stop at once, naming the command to run, if the warehouse is not at this code's revision."""
    with wh.connect() as conn:
        found = current(conn)
    wanted = head()
    if found == wanted:
        return
    where = wh.describe()
    if found is None:
        raise WarehouseOutdated(f"the warehouse ({where}) has no crm360 schema yet: run `{COMMAND}` first")
    if found in revisions():
        raise WarehouseOutdated(f"the warehouse ({where}) is at schema revision {found}, this crm360 needs "
                                f"{wanted}: run `{COMMAND}`")
    raise WarehouseOutdated(f"the warehouse ({where}) is at schema revision {found}, which this crm360 does "
                            f"not know (it needs {wanted}): a newer crm360 migrated it; upgrade crm360 here")


def _engine(wh: Warehouse):
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    return sa.create_engine(wh.sqlalchemy_url(driver="psycopg"), poolclass=NullPool)


def migrate(wh: Warehouse, revision: str = "head", wait: float | None = None) -> MigrationResult:
    """Apply every revision up to ``revision`` the warehouse lacks; then set the roles' passwords
    from the environment. Idempotent; safe to run from many processes at once."""
    from alembic import command

    from crm360.core import access, locks

    wanted = head() if revision == "head" else revision
    engine = _engine(wh)
    try:
        with engine.begin() as conn:
            require_server_version(int(conn.exec_driver_sql("show server_version_num").scalar()), wh.describe())
            conn.exec_driver_sql("select pg_advisory_xact_lock(hashtext(%(k)s))", {"k": _LOCK})
            before = current(conn.connection.driver_connection)
            if before != wanted:
                if before is not None and before not in revisions():
                    raise WarehouseOutdated(f"the warehouse ({wh.describe()}) is at schema revision {before}, "
                                            "which this crm360 does not know: a newer crm360 migrated it")
                # no run writes while the schema changes under it (a fresh warehouse has no runs yet)
                with locks.holding(wh, locks.EVERY_PART, "migrate", None,
                                   wait=wait_seconds() if wait is None else wait):
                    conn.exec_driver_sql(f"create schema if not exists {VERSION_SCHEMA}")
                    config = _config()
                    config.attributes["connection"] = conn
                    command.upgrade(config, wanted)
            after = current(conn.connection.driver_connection)
    except Crm360Error:
        raise
    except Exception as exc:
        if is_retryable(getattr(exc, "orig", None) or exc):  # the server went away: a retry may pass
            raise
        raise MigrationError(f"migrating the warehouse ({wh.describe()}) failed, nothing was changed: "
                             f"{exc.__class__.__name__}: {str(exc).strip().splitlines()[0]}") from exc
    finally:
        engine.dispose()
    applied = _between(before, after)
    access.sync_passwords(wh)
    result = MigrationResult(before, after, applied)
    log.info(result.describe())
    return result


def _between(before: str | None, after: str) -> tuple[str, ...]:
    order = revisions()
    start = order.index(before) + 1 if before in order else 0
    return tuple(order[start:order.index(after) + 1]) if after in order else ()


def wait_seconds() -> float:
    """How long ``migrate`` waits for runs in progress to finish before applying revisions."""
    return get_settings().migrate_wait
