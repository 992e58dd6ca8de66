"""${message}

Revision ${up_revision}, after ${down_revision | comma,n}; written ${create_date}.
"""

from alembic import op

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    raise NotImplementedError("crm360 migrates forward only: restore a backup to go back")
