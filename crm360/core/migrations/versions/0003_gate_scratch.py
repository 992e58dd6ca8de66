"""A schema of its own for the gates' working tables.

A gate computes each suite's rows once into an unlogged table that Great Expectations then
reads, and drops it when done. In 0.1 those tables came and went in ``audit``, beside the
tables people read. They now live in ``scratch``, which nobody but crm360 uses; tables left
behind in ``audit`` by a gate that was killed are dropped here.
"""

from alembic import op
from sqlalchemy import text

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("create schema if not exists scratch")
    op.execute("revoke all on schema scratch from public")
    leftovers = op.get_bind().execute(text(
        "select tablename from pg_tables where schemaname = 'audit' and tablename like '\\_gate\\_%'")).fetchall()
    for (table,) in leftovers:
        op.execute(f'drop table audit."{table}"')


def downgrade() -> None:
    raise NotImplementedError("crm360 migrates forward only: restore a backup to go back")
