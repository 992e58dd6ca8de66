"""Alembic's entry point for crm360's migrations.

crm360.core.schema hands over an open SQLAlchemy connection (``config.attributes["connection"]``)
inside a transaction that already holds the migration lock; every revision runs in that one
transaction, so a failed migration leaves the warehouse as it was. Run by ``crm360 migrate``;
``alembic -c crm360/core/migrations/alembic.ini revision -m "..."`` starts a new revision file.
"""

from __future__ import annotations

from alembic import context

from crm360.core.schema import VERSION_SCHEMA, VERSION_TABLE

config = context.config


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=None, version_table=VERSION_TABLE,
                      version_table_schema=VERSION_SCHEMA, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise SystemExit("apply crm360's migrations with `crm360 migrate`: it takes the migration lock first")
    _run(connection)


if context.is_offline_mode():
    raise SystemExit("crm360 migrations run against a warehouse: offline (--sql) mode is not supported")
run_migrations_online()
