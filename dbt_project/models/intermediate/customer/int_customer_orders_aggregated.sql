{#- One row per resolved customer who placed at least one order, over all of
    their shop records (an account and its guest checkouts are one customer).

    An order's net revenue is its lines' amount less what was refunded; cancelled
    orders and fully returned ones bring none. A purchase is an order the customer
    kept, wholly or in part (completed or partially returned). -#}
with orders as (
    select * from {{ ref('stg_sales__orders') }}
),

order_lines as (
    select * from {{ ref('stg_sales__order_lines') }}
),

shop_ids as (
    select identifier_value as customer_id, customer_key
    from {{ ref('int_identifiers_linked') }}
    where identifier_type = 'shop_customer_id'
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
        shop_ids.customer_key,
        orders.order_id,
        orders.ordered_at,
        orders.ordered_date,
        orders.order_status,
        orders.is_purchase,
        case
            when orders.order_status in ('cancelled', 'returned') then 0
            else coalesce(order_amounts.order_amount_eur, 0) - orders.refund_amount_eur
        end as net_revenue_eur,
        orders.refund_amount_eur
    from orders
    inner join shop_ids on orders.customer_id = shop_ids.customer_id
    left join order_amounts on orders.order_id = order_amounts.order_id
),

final as (
    select
        customer_key,
        count(*) as orders_placed,
        count(*) filter (where is_purchase) as orders_completed,
        count(*) filter (where order_status in ('returned', 'partially_returned')) as orders_returned,
        count(*) filter (where order_status = 'cancelled') as orders_cancelled,
        coalesce(sum(net_revenue_eur), 0) as revenue_eur,
        coalesce(sum(refund_amount_eur), 0) as refunded_eur,
        min(ordered_at) filter (where is_purchase) as first_order_at,
        max(ordered_at) filter (where is_purchase) as last_order_at,
        min(ordered_date) filter (where is_purchase) as first_order_date,
        max(ordered_date) filter (where is_purchase) as last_order_date
    from orders_with_amounts
    group by customer_key
)

select * from final
