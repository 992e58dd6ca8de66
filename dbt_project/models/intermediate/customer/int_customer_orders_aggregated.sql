{#- One row per shop customer who placed at least one order: order counts and
    revenue. Revenue counts completed orders only; cancelled and returned orders
    bring none. -#}
with orders as (
    select * from {{ ref('stg_sales__orders') }}
),

order_lines as (
    select * from {{ ref('stg_sales__order_lines') }}
),

order_amounts as (
    select
        order_id,
        sum(line_amount_eur) as order_amount_eur,
        sum(quantity) as item_count
    from order_lines
    group by order_id
),

orders_with_amounts as (
    select
        orders.customer_id,
        orders.order_id,
        orders.ordered_at,
        orders.ordered_date,
        orders.order_status,
        coalesce(order_amounts.order_amount_eur, 0) as order_amount_eur
    from orders
    left join order_amounts on orders.order_id = order_amounts.order_id
),

final as (
    select
        customer_id,
        count(*) as orders_placed,
        count(*) filter (where order_status = 'completed') as orders_completed,
        count(*) filter (where order_status = 'returned') as orders_returned,
        count(*) filter (where order_status = 'cancelled') as orders_cancelled,
        coalesce(sum(order_amount_eur) filter (where order_status = 'completed'), 0) as revenue_eur,
        min(ordered_at) filter (where order_status = 'completed') as first_order_at,
        max(ordered_at) filter (where order_status = 'completed') as last_order_at,
        min(ordered_date) filter (where order_status = 'completed') as first_order_date,
        max(ordered_date) filter (where order_status = 'completed') as last_order_date
    from orders_with_amounts
    group by customer_id
)

select * from final
