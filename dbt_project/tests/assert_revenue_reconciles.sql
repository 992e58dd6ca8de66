-- Net revenue in staging (lines less refunds, cancelled and fully returned orders
-- bringing none) equals the revenue the marts report, overall and per pyramid.
-- Returns a row per mismatch.
with order_amounts as (
    select order_id, sum(line_amount_eur) as amount_eur
    from {{ ref('stg_sales__order_lines') }}
    group by order_id
),

kept_orders as (
    select order_id, refund_amount_eur
    from {{ ref('stg_sales__orders') }}
    where order_status not in ('cancelled', 'returned')
),

staged as (
    select coalesce(sum(coalesce(order_amounts.amount_eur, 0) - kept_orders.refund_amount_eur), 0) as revenue_eur
    from kept_orders
    left join order_amounts on kept_orders.order_id = order_amounts.order_id
),

reported as (
    select 'customer_360' as mart, sum(revenue_eur) as revenue_eur from {{ ref('customer_360') }}
    union all
    select 'pyramid:' || pyramid as mart, sum(revenue_eur) as revenue_eur
    from {{ ref('customer_pyramid_summary') }}
    group by pyramid
)

select reported.mart, reported.revenue_eur as reported_eur, staged.revenue_eur as staged_eur
from reported
cross join staged
where reported.revenue_eur is distinct from staged.revenue_eur
