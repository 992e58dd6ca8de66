-- Net revenue in staging (lines less refunds, cancelled and fully returned orders
-- bringing none) equals the revenue the marts report: customer_360 all of it, and
-- each pyramid at every snapshot of customer_pyramid_summary (the current one
-- included) the revenue of orders dated before the snapshot date.
-- Returns a row per mismatch.
with order_amounts as (
    select order_id, sum(line_amount_eur) as amount_eur
    from {{ ref('stg_sales__order_lines') }}
    group by order_id
),

kept_orders as (
    select order_id, ordered_date, refund_amount_eur
    from {{ ref('stg_sales__orders') }}
    where order_status not in ('cancelled', 'returned')
),

staged_by_day as (
    select
        kept_orders.ordered_date,
        sum(coalesce(order_amounts.amount_eur, 0) - kept_orders.refund_amount_eur) as revenue_eur
    from kept_orders
    left join order_amounts on kept_orders.order_id = order_amounts.order_id
    group by kept_orders.ordered_date
),

staged as (
    select coalesce(sum(revenue_eur), 0) as revenue_eur from staged_by_day
),

summary as (
    select snapshot_date, pyramid, sum(revenue_eur) as revenue_eur
    from {{ ref('customer_pyramid_summary') }}
    group by snapshot_date, pyramid
),

staged_before_snapshot as (
    select snapshots.snapshot_date, coalesce(sum(staged_by_day.revenue_eur), 0) as revenue_eur
    from (select distinct snapshot_date from summary) as snapshots
    left join staged_by_day on staged_by_day.ordered_date < snapshots.snapshot_date
    group by snapshots.snapshot_date
),

mismatches as (
    select 'customer_360' as mart, reported.revenue_eur as reported_eur, staged.revenue_eur as staged_eur
    from (select coalesce(sum(revenue_eur), 0) as revenue_eur from {{ ref('customer_360') }}) as reported
    cross join staged
    where reported.revenue_eur is distinct from staged.revenue_eur
    union all
    select
        'pyramid:' || summary.pyramid || ' at ' || summary.snapshot_date,
        summary.revenue_eur,
        staged_before_snapshot.revenue_eur
    from summary
    inner join staged_before_snapshot on summary.snapshot_date = staged_before_snapshot.snapshot_date
    where summary.revenue_eur is distinct from staged_before_snapshot.revenue_eur
)

select * from mismatches
