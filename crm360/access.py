"""Who may read and write what in the warehouse: the project's PostgreSQL roles.

Four login roles, created (if missing) and granted by ``ensure_roles`` at every
``prepare``, so a new warehouse and an old one end up with the same privileges:

    crm360_loader       writes raw and the load ledger; reads nothing dbt builds
    crm360_transformer  reads raw, writes staging, intermediate, predictions and builds marts
    bi_reader           reads the published marts, nothing else (BI tools, analysts)
    marketing           reads the segment lists only (``marts.segment_members``, the
                        ``marts.segment__<name>`` views, ``marts.segments``); contact
                        fields arrive masked for customers without marketing consent;
                        may add to the export log, nothing more

Table privileges on marts come from dbt's ``grants`` config (dbt_project.yml and
the marketing models), applied when dbt builds a table in ``marts__build``. Schema
privileges on ``marts`` are granted by the publication, in the transaction that
swaps the schemas (crm360.publish): the readers never get ``usage`` on the build
schema, so they cannot read marts that have not passed the gates.

Passwords come from the environment (``CRM360_BI_READER_PASSWORD`` ...). A role
without one can still log in where the server trusts the connection (the
embedded server's socket, a local development server); a role with one gets it
set at every ``prepare``.
"""

from __future__ import annotations

import logging
import os
import time

import psycopg
from psycopg import sql

from crm360.warehouse import Warehouse

log = logging.getLogger(__name__)

LOADER = "crm360_loader"
TRANSFORMER = "crm360_transformer"
BI_READER = "bi_reader"
MARKETING = "marketing"
ROLES = (LOADER, TRANSFORMER, BI_READER, MARKETING)
# the roles that read published marts: publish grants them usage on the schema
READERS = (BI_READER, MARKETING)

PASSWORD_ENV = {
    LOADER: "CRM360_LOADER_PASSWORD",
    TRANSFORMER: "CRM360_TRANSFORMER_PASSWORD",
    BI_READER: "CRM360_BI_READER_PASSWORD",
    MARKETING: "CRM360_MARKETING_PASSWORD",
}

# the export log marketing appends to (crm360.segments)
SEGMENT_EXPORTS_DDL = """
create table if not exists audit.segment_exports (
    exported_at timestamptz not null default now(),
    exported_by text not null,
    db_role text not null default current_user,
    segment_name text not null,
    segment_version text,
    row_count bigint not null,
    destination text,
    format text not null
)
"""


class AccessError(RuntimeError):
    """The project's roles cannot be created or granted on this server."""


def _role_exists(conn, role: str) -> bool:
    return conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone() is not None


def _create_role(conn, role: str) -> None:
    """Create a login role; several databases on one server may race to create it."""
    for attempt in range(5):
        if _role_exists(conn, role):
            return
        try:
            conn.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
            return
        except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
            return
        except psycopg.errors.InternalError:  # "tuple concurrently updated": another session won
            time.sleep(0.1 * (attempt + 1))
    if not _role_exists(conn, role):
        raise AccessError(f"could not create role {role}")


def _grants(database: str) -> list[sql.Composable]:
    i = sql.Identifier
    db = i(database)
    loader, transformer = i(LOADER), i(TRANSFORMER)
    stmts: list[sql.Composable] = [
        sql.SQL("revoke all on schema raw, staging, intermediate, audit from public"),
        sql.SQL("grant connect on database {} to {}, {}, {}, {}").format(
            db, loader, transformer, i(BI_READER), i(MARKETING)),
        # loader: raw and the load ledger
        sql.SQL("grant usage on schema raw, audit to {}").format(loader),
        sql.SQL("grant select, insert, update, delete on all tables in schema raw, audit to {}").format(loader),
        sql.SQL("alter default privileges in schema raw, audit "
                "grant select, insert, update, delete on tables to {}").format(loader),
        # transformer: reads raw, owns what dbt builds
        sql.SQL("grant usage on schema raw to {}").format(transformer),
        sql.SQL("grant select on all tables in schema raw to {}").format(transformer),
        sql.SQL("alter default privileges in schema raw grant select on tables to {}").format(transformer),
        sql.SQL("grant create, connect on database {} to {}").format(db, transformer),
        sql.SQL("grant usage, create on schema staging, intermediate to {}").format(transformer),
        sql.SQL("grant all on all tables in schema staging, intermediate to {}").format(transformer),
        sql.SQL("alter default privileges in schema staging, intermediate grant all on tables to {}").format(
            transformer),
        # marketing: adds rows to the export log, reads nothing else in audit
        sql.SQL("grant usage on schema audit to {}").format(i(MARKETING)),
        sql.SQL("grant insert on audit.segment_exports to {}").format(i(MARKETING)),
    ]
    return stmts


def ensure_roles(wh: Warehouse) -> None:
    """Create the project's roles if missing, set their passwords, grant their privileges."""
    with wh.connect(autocommit=True) as conn:
        conn.execute(SEGMENT_EXPORTS_DDL)
        try:
            for role in ROLES:
                _create_role(conn, role)
                password = os.environ.get(PASSWORD_ENV[role])
                if password:
                    conn.execute(sql.SQL("alter role {} password {}").format(
                        sql.Identifier(role), sql.Literal(password)))
        except psycopg.errors.InsufficientPrivilege as exc:
            raise AccessError(
                f"the warehouse user {wh.user} may not create roles ({exc}); create "
                f"{', '.join(ROLES)} once as a superuser, or give {wh.user} CREATEROLE") from exc
        for stmt in _grants(wh.dbname):
            conn.execute(stmt)
        # readers see the published marts only; a warehouse published before roles existed gets them now
        if conn.execute("select 1 from pg_namespace where nspname = 'marts'").fetchone():
            grant_readers(conn, "marts")


def _existing(conn, roles) -> list[str]:
    return [r[0] for r in conn.execute("select rolname from pg_roles where rolname = any(%s) order by rolname",
                                       (list(roles),)).fetchall()]


def grant_readers(conn, schema: str) -> None:
    """Give the reader roles usage on a published marts schema (its tables carry dbt's grants)."""
    readers = _existing(conn, READERS)  # none before the first prepare: nobody to grant to yet
    if readers:
        conn.execute(sql.SQL("grant usage on schema {} to {}").format(
            sql.Identifier(schema), sql.SQL(", ").join(sql.Identifier(r) for r in readers)))


def revoke_readers(conn, schema: str) -> None:
    readers = _existing(conn, READERS)
    if readers:
        conn.execute(sql.SQL("revoke all on schema {} from {}").format(
            sql.Identifier(schema), sql.SQL(", ").join(sql.Identifier(r) for r in readers)))


def as_role(wh: Warehouse, role: str) -> Warehouse:
    """The same database, reached as one of the project's roles (password from its env var)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; crm360's roles are {', '.join(ROLES)}")
    params = {k: v for k, v in wh.params.items() if k not in ("user", "password")}
    params["user"] = role
    password = os.environ.get(PASSWORD_ENV[role])
    if password:
        params["password"] = password
    return Warehouse(params=params, embedded=wh.embedded)
