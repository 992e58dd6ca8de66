-- Net revenue in staging (lines less refunds, cancelled and fully returned orders
-- bringing none) equals the revenue the marts report: customer_360 all of it, and
-- each pyramid at every snapshot of customer_pyramid_summary (the current one
-- included) the revenue of orders dated before the snapshot date.
-- Orders in another currency than var('reporting_currency') are converted here on their own,
-- by the rate of their day, each line and refund rounded to the cent.
-- Returns a row per mismatch.
with kept_orders as (
    select
        orders.order_id,
        orders.ordered_date,
        case
            when orders.currency_code = '{{ var("reporting_currency") }}' then 1
            else rates.rate
        end as rate,
        orders.refund_amount
    from {{ ref('stg_sales__orders') }} as orders
    left join {{ ref('stg_sales__currency_rates') }} as rates
        on orders.currency_code = rates.currency_code
        and orders.ordered_date between rates.valid_from and rates.valid_until
    where orders.order_status not in ('cancelled', 'returned')
),

order_amounts as (
    select lines.order_id, sum(round(lines.line_amount * kept_orders.rate, 2)) as amount
    from {{ ref('stg_sales__order_lines') }} as lines
    inner join kept_orders on lines.order_id = kept_orders.order_id
    group by lines.order_id
),

staged_by_day as (
    select
        kept_orders.ordered_date,
        sum(coalesce(order_amounts.amount, 0) - round(kept_orders.refund_amount * kept_orders.rate, 2)) as revenue
    from kept_orders
    left join order_amounts on kept_orders.order_id = order_amounts.order_id
    group by kept_orders.ordered_date
),

staged as (
    select coalesce(sum(revenue), 0) as revenue from staged_by_day
),

summary as (
    select snapshot_date, pyramid, sum(revenue) as revenue
    from {{ ref('customer_pyramid_summary') }}
    group by snapshot_date, pyramid
),

staged_before_snapshot as (
    select snapshots.snapshot_date, coalesce(sum(staged_by_day.revenue), 0) as revenue
    from (select distinct snapshot_date from summary) as snapshots
    left join staged_by_day on staged_by_day.ordered_date < snapshots.snapshot_date
    group by snapshots.snapshot_date
),

mismatches as (
    select 'customer_360' as mart, reported.revenue as reported, staged.revenue as staged
    from (select coalesce(sum(revenue), 0) as revenue from {{ ref('customer_360') }}) as reported
    cross join staged
    where reported.revenue is distinct from staged.revenue
    union all
    select
        'pyramid:' || summary.pyramid || ' at ' || summary.snapshot_date,
        summary.revenue,
        staged_before_snapshot.revenue
    from summary
    inner join staged_before_snapshot on summary.snapshot_date = staged_before_snapshot.snapshot_date
    where summary.revenue is distinct from staged_before_snapshot.revenue
)

select * from mismatches
