"""Write-audit-publish for the marts.

dbt builds the marts into ``marts__build``, which BI roles are never given; the
gates check that schema; ``publish`` then swaps it in as ``marts`` in a single
transaction. Readers see either yesterday's marts or today's, never a mix, a
half-built table or a missing relation. The reader roles (crm360.core.access) get
``usage`` on the new ``marts`` and lose it on the replaced one in that transaction. The replaced marts are kept as
``marts__previous`` until the next publication, for comparison or rollback.

Dropping a schema waits for every transaction that read its tables, such as a BI session
left idle in transaction: the DDL here waits briefly per try and then fails, retryably,
naming that session (crm360.core.ddl).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from psycopg import sql

from crm360.core import access, ddl
from crm360.core.errors import Crm360Error
from crm360.core.warehouse import Warehouse

log = logging.getLogger(__name__)

PUBLISHED = "marts"
BUILD = "marts__build"
PREVIOUS = "marts__previous"

class PublishError(Crm360Error):
    pass


def _schema_exists(conn, name: str) -> bool:
    return conn.execute("select 1 from pg_namespace where nspname = %s", (name,)).fetchone() is not None


def reset_build(wh: Warehouse) -> None:
    """Start every build from an empty build schema, so nothing stale is published."""
    with wh.connect() as conn:
        ddl.run(wh, conn, f"dbt build: dropping the previous {BUILD}", lambda: conn.execute(
            sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(BUILD))))
        conn.commit()


def _swap(conn) -> None:
    conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(PREVIOUS)))
    if _schema_exists(conn, PUBLISHED):
        conn.execute(sql.SQL("alter schema {} rename to {}").format(
            sql.Identifier(PUBLISHED), sql.Identifier(PREVIOUS)))
    conn.execute(sql.SQL("alter schema {} rename to {}").format(
        sql.Identifier(BUILD), sql.Identifier(PUBLISHED)))
    # schema privileges belong to the schema: the readers get the new marts, not the old
    # ones, in the same transaction (their tables carry dbt's grants)
    access.grant_readers(conn, PUBLISHED)
    if _schema_exists(conn, PREVIOUS):
        access.revoke_readers(conn, PREVIOUS)


def publish(wh: Warehouse, run_id: str) -> list[str]:
    """Swap the audited build schema in as ``marts``. Returns the published tables."""
    with wh.connect() as conn:
        with conn.transaction():
            # one publication at a time, whichever process asks
            conn.execute("select pg_advisory_xact_lock(hashtext('crm360.transform.publish'))")
            if not _schema_exists(conn, BUILD):
                raise PublishError(f"nothing to publish: schema {BUILD} does not exist (build first)")
            tables = [r[0] for r in conn.execute(
                "select table_name from information_schema.tables where table_schema = %s "
                "order by table_name", (BUILD,)).fetchall()]
            if not tables:
                raise PublishError(f"nothing to publish: schema {BUILD} is empty")
            ddl.run(wh, conn, f"publish: swapping {BUILD} in as {PUBLISHED}", lambda: _swap(conn))
            conn.execute("insert into audit.publications (run_id, published_at, tables) values (%s, %s, %s)",
                         (run_id, datetime.now(UTC), tables))
    log.info("published %d tables as %s for run %s", len(tables), PUBLISHED, run_id)
    return tables
