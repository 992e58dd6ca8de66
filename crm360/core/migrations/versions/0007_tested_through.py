"""How far each incremental model's rows have passed dbt's tests: a day's tests read only the rows after.

``audit.tested_through``: one row per incremental model (its name), the newest ``loaded_at`` it
held when a build's dbt tests last all passed. A day's build tests that model's row-level checks
(``not_null``, ``accepted_values``; not ``unique`` or ``relationships``, which can fail on old
rows because of new ones) only on its rows loaded after the mark; a build takes the marks out
before it starts and writes them again only when every test passed (crm360.transform.day_tests).
``project`` is the digest of the dbt project the tests were run with
(crm360.transform.manifest.fingerprint): after a change to it, every row is tested again.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        create table audit.tested_through (
            model text primary key,
            loaded_at timestamptz not null,
            project text not null,
            run_id text,
            recorded_at timestamptz not null default now()
        )""")
    op.execute("comment on table audit.tested_through is "
               "'Per incremental model, the newest loaded_at of its rows when its dbt tests last all passed.'")
    op.execute("grant select, insert, update, delete on audit.tested_through to crm360_transformer")


def downgrade() -> None:
    op.execute("drop table audit.tested_through")
