"""Columns an export adds go to the row's ``_extra`` instead of new raw columns.

In 0.1 a CSV column the contract did not know was added to its raw table by the load that
first saw it: DDL in the middle of a load, which raced with the other loads' transactions.
Now every raw CSV table has ``_extra jsonb``, holding such columns by name, and loads change
no table's columns. Columns 0.1 added are folded into ``_extra`` (null values left out) and
dropped; the drift log keeps its rows, now saying where the values went.
"""

from alembic import op

from crm360.core.migrations import helpers

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table, contract in helpers.CSV_TABLES_0_1.items():
        op.execute(f"alter table raw.{table} add column if not exists _extra jsonb")
        added = [c for c in helpers.columns("raw", table)
                 if c not in contract and c not in helpers.META_COLUMNS and c != "_extra"]
        if not added:
            continue
        for start in range(0, len(added), 40):  # a function takes at most 100 arguments
            pairs = ", ".join(f"{helpers.literal(c)}, {helpers.identifier(c)}" for c in added[start:start + 40])
            helpers.execute(f"update raw.{table} set _extra = nullif(jsonb_strip_nulls(coalesce(_extra, '{{}}'::jsonb) "
                            f"|| jsonb_build_object({pairs})), '{{}}'::jsonb)")
        for column in added:
            helpers.execute(f"alter table raw.{table} drop column {helpers.identifier(column)}")
    op.execute("update audit.schema_drift set change = 'column kept in _extra' "
               "where change = 'column added to raw'")


def downgrade() -> None:
    raise NotImplementedError("crm360 migrates forward only: restore a backup to go back")
