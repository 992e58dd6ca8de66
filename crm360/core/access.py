"""Who may read and write what in the warehouse: the project's PostgreSQL roles.

Four login roles, created and granted by the migrations (``crm360 migrate``,
crm360/core/migrations), so a new warehouse and an old one end up with the same privileges:

    crm360_loader       writes raw and the load ledger; reads nothing dbt builds
    crm360_transformer  reads raw, writes staging, intermediate, predictions and builds marts
    bi_reader           reads the published marts, nothing else (BI tools, analysts)
    marketing           reads the segment lists only (``marts.segment_members``, the
                        ``marts.segment__<name>`` views, ``marts.segments``); contact
                        fields arrive masked for customers without marketing consent;
                        may add to the export log (for whom, which segment, rows, where
                        to: the database stamps its role and the time), nothing more

Table privileges on marts come from dbt's ``grants`` config (dbt_project.yml and
the marketing models), applied when dbt builds a table in ``marts__build``. Schema
privileges on ``marts`` are granted by the publication, in the transaction that
swaps the schemas (crm360.transform.publish): the readers never get ``usage`` on the build
schema, so they cannot read marts that have not passed the gates.

Passwords come from the environment (``CRM360_BI_READER_PASSWORD`` ...). A role
without one can still log in where the server trusts the connection (the
embedded server's socket, a local development server); a role with one gets it
set at every ``crm360 migrate``.
"""

from __future__ import annotations

import logging
import time

import psycopg
from psycopg import sql

from crm360.core.errors import Crm360Error
from crm360.core.settings import Settings, get_settings
from crm360.core.warehouse import Warehouse

log = logging.getLogger(__name__)

LOADER = "crm360_loader"
TRANSFORMER = "crm360_transformer"
BI_READER = "bi_reader"
MARKETING = "marketing"
ROLES = (LOADER, TRANSFORMER, BI_READER, MARKETING)
# the roles that read published marts: publish grants them usage on the schema
READERS = (BI_READER, MARKETING)

# each role's password: a field of crm360.core.settings, read from this env var
PASSWORD_ENV = {
    LOADER: Settings.env_name("loader_password"),
    TRANSFORMER: Settings.env_name("transformer_password"),
    BI_READER: Settings.env_name("bi_reader_password"),
    MARKETING: Settings.env_name("marketing_password"),
}

class AccessError(Crm360Error):
    """The project's roles cannot be created or granted on this server."""


def sync_passwords(wh: Warehouse) -> list[str]:
    """Set each role's password from its env var, where one is set (``crm360 migrate`` does, after
    the migrations created the roles); returns the roles changed."""
    changed = []
    with wh.connect(autocommit=True) as conn:
        for role in ROLES:
            password = get_settings().password(PASSWORD_ENV[role])
            if not password:
                continue
            statement = sql.SQL("alter role {} password {}").format(sql.Identifier(role), sql.Literal(password))
            try:
                retry_on_race(lambda statement=statement: conn.execute(statement))
            except psycopg.errors.InsufficientPrivilege as exc:
                raise AccessError(f"the warehouse user {wh.user} may not set the password of {role} ({exc}); "
                                  f"set it once as a superuser, or give {wh.user} CREATEROLE") from exc
            changed.append(role)
    return changed


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
    password = get_settings().password(PASSWORD_ENV[role])
    if password:
        params["password"] = password
    return Warehouse(params=params, embedded=wh.embedded)


def retry_on_race(action, attempts: int = 10) -> None:
    """Run ``action()`` again when another session changed the same catalog row at the same moment
    (roles are shared by every database of a server)."""
    for attempt in range(attempts):
        try:
            action()
            return
        except psycopg.errors.InternalError:  # "tuple concurrently updated"
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
