"""What several revisions need: facts about the server, and DDL that has to be careful.

Revisions call these with alembic's ``op`` bound to the migrating connection. Behaviour a
revision relies on must not change here: a change of meaning is a new helper.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

# The raw CSV tables of crm360 0.1 and their contract columns (frozen: revisions rely on them).
CSV_TABLES_0_1 = {
    "sales_products": ("product_id", "product_name", "category", "list_price"),
    "sales_customers": ("customer_id", "account_type", "first_name", "last_name", "email", "phone", "gender",
                        "birth_year", "income_band", "occupation", "city", "region", "country_code",
                        "acquisition_channel", "marketing_consent", "created_at", "updated_at"),
    "sales_orders": ("order_id", "customer_id", "ordered_at", "status", "currency", "channel", "refund_amount",
                     "updated_at"),
    "sales_order_lines": ("order_id", "line_number", "product_id", "quantity", "unit_price"),
}
META_COLUMNS = ("_batch_id", "_source_file", "_loaded_at")


def execute(statement: str) -> None:
    """Run a statement as it is, in the migration's transaction: names taken from the catalog may
    hold characters (':', '%') that SQLAlchemy's text() would read as parameters."""
    op.get_bind().connection.driver_connection.execute(statement)


def identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _scalar(query: str, **params):
    return op.get_bind().execute(sa.text(query), params).scalar()


def columns(schema: str, table: str) -> list[str]:
    """The table's columns in their order."""
    rows = op.get_bind().execute(sa.text(
        """select a.attname from pg_attribute a where a.attrelid = to_regclass(:t) and a.attnum > 0
           and not a.attisdropped order by a.attnum"""), {"t": f"{schema}.{table}"})
    return [r[0] for r in rows]


def server_version() -> int:
    return int(_scalar("select current_setting('server_version_num')::int"))


def current_database() -> str:
    return str(_scalar("select current_database()"))


def source_file_bytewise(table: str) -> None:
    """``raw.<table>._source_file`` compares bytewise (collation "C"), whatever the database's
    locale; a table made before it did is changed in place (its indexes are rebuilt once)."""
    collation = _scalar(
        """select a.attcollation::regcollation::text from pg_attribute a
           where a.attrelid = to_regclass(:t) and a.attname = '_source_file' and not a.attisdropped""",
        t=f"raw.{table}")
    if collation is not None and collation != '"C"':
        op.execute(f'alter table raw.{table} alter column _source_file type text collate "C"')


# Roles belong to the server, not to one database: two warehouses on one server migrating at
# the same moment may both try to create a role. The loser's statement fails (a duplicate, or
# "tuple concurrently updated" from the catalog); inside a savepoint it is tried again.
_ROLE_RACE = ("42710", "23505", "XX000")


def ensure_roles(roles: tuple[str, ...], attempts: int = 10) -> None:
    """Create the login roles that do not exist yet."""
    bind = op.get_bind()
    for role in roles:
        for attempt in range(attempts):
            if _scalar("select count(*) from pg_roles where rolname = :r", r=role):
                break
            savepoint = bind.begin_nested()
            try:
                bind.execute(sa.text(f'create role "{role}" login'))
                savepoint.commit()
                break
            except sa.exc.DBAPIError as exc:
                savepoint.rollback()
                if getattr(exc.orig, "sqlstate", None) not in _ROLE_RACE or attempt == attempts - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
