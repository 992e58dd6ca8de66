{{ config(post_hook=["{{ ensure_index(['customer_key']) }}"]) }}
{#- One row per order with the resolved customer it belongs to and its money.

    An order's net revenue is its lines' amount less what was refunded; cancelled
    orders and fully returned ones bring none. A purchase is an order the customer
    kept, wholly or in part (completed or partially returned). Indexed on customer_key: the
    incremental customer-level models read the orders of the customers a build touched. -#}
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
        sum(quantity) as item_count,
        count(*) as line_count
    from order_lines
    group by order_id
),

final as (
    select
        orders.order_id,
        shop_ids.customer_key,
        orders.customer_id as shop_customer_id,
        orders.ordered_at,
        orders.ordered_date,
        orders.order_status,
        orders.is_purchase,
        orders.sales_channel,
        coalesce(order_amounts.order_amount_eur, 0) as order_amount_eur,
        coalesce(order_amounts.item_count, 0) as item_count,
        coalesce(order_amounts.line_count, 0) as line_count,
        orders.refund_amount_eur,
        case
            when orders.order_status in ('cancelled', 'returned') then 0
            else coalesce(order_amounts.order_amount_eur, 0) - orders.refund_amount_eur
        end as net_revenue_eur,
        orders.updated_at
    from orders
    inner join shop_ids on orders.customer_id = shop_ids.customer_id
    left join order_amounts on orders.order_id = order_amounts.order_id
)

select * from final
