{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook="{{ clear_affected_customers(['identity', 'sales']) }}",
    post_hook=["{{ ensure_index(['customer_key']) }}"],
) }}
{#- One row per resolved customer who placed at least one order, over all of
    their shop records (an account and its guest checkouts are one customer).

    Incremental on the customers a build touched (int_customers_affected, reasons identity and
    sales; macros/affected_customers.sql): their rows are deleted and computed again from their
    orders, read through the customer_key index of int_orders_attributed. -#}
-- depends_on: {{ ref('int_customers_affected') }}
with orders as (
    select * from {{ ref('int_orders_attributed') }}
    where {{ affected_filter('customer_key', ['identity', 'sales']) }}
),

final as (
    select
        customer_key,
        count(*) as orders_placed,
        count(*) filter (where is_purchase) as orders_completed,
        count(*) filter (where order_status in ('returned', 'partially_returned')) as orders_returned,
        count(*) filter (where order_status = 'cancelled') as orders_cancelled,
        coalesce(sum(net_revenue), 0) as revenue,
        coalesce(sum(refund_amount), 0) as refunded,
        min(ordered_at) filter (where is_purchase) as first_order_at,
        max(ordered_at) filter (where is_purchase) as last_order_at,
        min(ordered_date) filter (where is_purchase) as first_order_date,
        max(ordered_date) filter (where is_purchase) as last_order_date,
        -- the purchase day before the last one: a long gap before the last means won back
        (array_agg(distinct ordered_date order by ordered_date desc) filter (where is_purchase))[2]
            as previous_order_date,
        count(distinct ordered_date) filter (where is_purchase) as purchase_days,
        coalesce(sum(net_revenue) filter (where is_purchase), 0)
            / nullif(count(*) filter (where is_purchase), 0) as average_order_value,
        max(updated_at) as sales_updated_at
    from orders
    group by customer_key
)

select * from final
