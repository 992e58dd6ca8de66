"""Money has a currency: the deployment's exchange rates, and currency-neutral predictions.

``raw.currency_rates`` holds the rates file ``sources.yml`` names under ``currency: rates:``
(crm360.ingest.currency), replaced as a whole by each sales load: one row per currency and
period, the rate that turns one unit of it into the reporting currency, from ``valid_from`` to
``valid_until`` (``valid_to``, else the day before the currency's next rate; 9999-12-31 for the
last), which the load computes once for the quarantine rule and staging alike. Staging reads it to
convert orders in other currencies; the load quarantines an order in a currency without a rate
on its day. ``source_file`` and ``line`` say where each rate came from.

``predictions.customer_value`` loses its ``_eur`` suffixes (``expected_order_value``,
``predicted_clv``): amounts are in the reporting currency, whichever it is. So do the columns of
the incremental staging tables a build before this one left (staging amounts are in the order's
currency now): dbt adds rows to those tables by the columns they have, and would fail on the old
names; the tables rebuilt every run need nothing.
"""

from alembic import op

from crm360.core.migrations import helpers

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

RENAMED = {"expected_order_value_eur": "expected_order_value", "predicted_clv_eur": "predicted_clv"}
STAGING_RENAMED = {"stg_sales__orders": {"refund_amount_eur": "refund_amount"},
                   "stg_sales__order_lines": {"unit_price_eur": "unit_price", "line_amount_eur": "line_amount"}}


def upgrade() -> None:
    op.execute("""create table raw.currency_rates (
        currency text not null check (currency ~ '^[A-Z]{3}$'),
        valid_from date not null,
        valid_to date,
        valid_until date not null,
        rate numeric not null check (rate > 0),
        source_file text not null,
        line integer not null,
        loaded_at timestamptz not null default now(),
        primary key (currency, valid_from),
        check (valid_to is null or valid_to >= valid_from),
        check (valid_until >= valid_from))""")
    present = set(helpers.columns("predictions", "customer_value"))
    for old, new in RENAMED.items():
        if old in present:
            op.execute(f"alter table predictions.customer_value rename column {old} to {new}")
    for table, renamed in STAGING_RENAMED.items():
        present = set(helpers.columns("staging", table))  # none before the first build
        for old, new in renamed.items():
            if old in present:
                op.execute(f"alter table staging.{table} rename column {old} to {new}")


def downgrade() -> None:
    raise NotImplementedError("crm360 migrates forward only: restore a backup to go back")
