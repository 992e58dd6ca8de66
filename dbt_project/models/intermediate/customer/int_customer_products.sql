{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook="{{ clear_affected_customers(['identity', 'sales']) }}",
    post_hook=["{{ ensure_index(['customer_key']) }}"],
) }}
{#- One row per customer and product they ordered (any order not cancelled, returns included):
    when they last bought it in a purchase (an order kept wholly or in part; null when every
    order of it was returned). What customer_next_product suggests from (the recently bought
    products) and leaves out (every product ordered).

    Incremental on the customers a build touched (int_customers_affected, reasons identity and
    sales; macros/affected_customers.sql): their rows are deleted and computed again from their
    orders, read through the customer_key index of int_orders_attributed and the order_id index
    of the order lines. #}
-- depends_on: {{ ref('int_customers_affected') }}
with orders as (
    select * from {{ ref('int_orders_attributed') }}
    where order_status <> 'cancelled' and {{ affected_filter('customer_key', ['identity', 'sales']) }}
),

order_lines as (
    select * from {{ ref('stg_sales__order_lines') }}
),

final as (
    select
        orders.customer_key,
        order_lines.product_id,
        max(orders.ordered_at) filter (where orders.is_purchase) as last_bought_at
    from orders
    inner join order_lines on orders.order_id = order_lines.order_id
    where order_lines.product_id is not null
    group by orders.customer_key, order_lines.product_id
)

select * from final
