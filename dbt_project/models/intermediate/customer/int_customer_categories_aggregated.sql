{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook="{{ clear_affected_customers(['identity', 'sales']) }}",
    post_hook=["{{ ensure_index(['customer_key']) }}"],
) }}
{#- One row per buying customer with what and how they buy: their favourite
    category (the most net spend on kept orders), the share of spend in it, and the
    share of spend bought at a discount (a unit price at least
    var('needs_discount_threshold') below the product's list price).

    Incremental on the customers a build touched (int_customers_affected, reasons identity and
    sales; macros/affected_customers.sql): their rows are deleted and computed again from their
    orders, read through the customer_key index of int_orders_attributed and the order_id index
    of the order lines. A product's changed category or list price recomputes its buyers; changed
    exchange rates or rule vars recompute everyone. #}
-- depends_on: {{ ref('int_customers_affected') }}
with orders as (
    select * from {{ ref('int_orders_attributed') }}
    where is_purchase and {{ affected_filter('customer_key', ['identity', 'sales']) }}
),

order_lines as (
    select * from {{ ref('stg_sales__order_lines') }}
),

products as (
    select * from {{ ref('stg_sales__products') }}
),

lines as (
    select
        orders.customer_key,
        coalesce(products.category, 'unknown') as category,
        order_lines.product_id,
        round(order_lines.line_amount * orders.rate_to_reporting, 2) as line_amount,
        -- list prices are in the reporting currency: the unit price converted, unrounded
        order_lines.unit_price * orders.rate_to_reporting
            < products.list_price * (1 - {{ var('needs_discount_threshold') }}) as is_discounted
    from order_lines
    inner join orders on order_lines.order_id = orders.order_id
    left join products on order_lines.product_id = products.product_id
),

by_category as (
    select
        customer_key,
        category,
        sum(line_amount) as spend,
        sum(line_amount) filter (where is_discounted) as discounted_spend,
        count(distinct product_id) as products
    from lines
    group by customer_key, category
),

final as (
    select
        customer_key,
        (array_agg(category order by spend desc, category))[1] as favourite_category,
        max(spend) / nullif(sum(spend), 0) as favourite_category_share,
        coalesce(sum(discounted_spend), 0) / nullif(sum(spend), 0) as discounted_share,
        count(*) as categories_bought,
        sum(products) as products_bought
    from by_category
    group by customer_key
)

select * from final
