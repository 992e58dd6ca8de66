{#- One row per customer and snapshot period with orders: what the customer ordered in the days
    a snapshot is the first to see. Orders dated before var('as_of_date') only (UTC dates).

    The first snapshot a fact dated d is visible in is the first snapshot after d: the next
    month start, or as_of_date within its month (see int_tier_snapshots_dated). Summing
    orders once per customer and period keeps int_customer_tiers_monthly's work
    proportional to buyers x snapshots. -#}
with orders as (
    select customer_key, ordered_date, is_purchase, net_revenue
    from {{ ref('int_orders_attributed') }}
    where ordered_date < {{ as_of_date() }}
),

by_period as (
    select
        customer_key,
        least(
            cast(date_trunc('month', cast(ordered_date as timestamp)) + interval '1 month' as date),
            {{ as_of_date() }}
        ) as snapshot_date,
        min(ordered_date) as period_first_order_date,
        sum(net_revenue) as period_revenue,
        count(*) filter (where is_purchase) as period_purchases,
        max(ordered_date) filter (where is_purchase) as period_last_purchase_date
    from orders
    group by 1, 2
),

final as (
    select
        customer_key,
        snapshot_date,
        period_first_order_date,
        period_revenue,
        period_purchases,
        period_last_purchase_date
    from by_period
)

select * from final
