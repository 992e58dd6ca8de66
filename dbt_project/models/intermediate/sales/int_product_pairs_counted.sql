{{ config(
    materialized='incremental',
    unique_key=['product_a', 'product_b'],
    incremental_strategy='delete+insert',
    pre_hook="{{ stage_changed_baskets() }}",
    post_hook=["{{ record_counted_baskets() }}", "{{ ensure_index(['product_a', 'product_b']) }}"],
) }}
{#- One row per pair of products (product_a <= product_b) bought together in at least one
    purchase, with the number of purchases holding both; a pair of a product with itself is the
    number of purchases holding the product. What product_affinity reads its rules from.

    Counted by difference (macros/baskets.sql): each build adds the pairs of the staged orders'
    baskets now and takes away those of their baskets as last counted, so a day costs its orders,
    not the history. A first build, a full refresh and a day that replaced sales files count
    every purchase. In a dbt unit test (no hooks run) the baskets come from the given orders. -#}
-- depends_on: {{ ref('stg_sales__orders') }}
-- depends_on: {{ ref('stg_sales__order_lines') }}
with changes as (
    {%- if '__dbt__cte__' in (ref('stg_sales__orders') | string) %}
    select order_id, products, cast(null as text[]) as counted_products
    from ({{ purchase_baskets() }}) as baskets
    {%- else %}
    select order_id, products, counted_products
    from pg_temp.crm360_changed_baskets
    {%- endif %}
),

difference as (
    select product_a, product_b, sum(orders_with_both) as orders_with_both
    from (
        {{ basket_pairs('changes', 'products', 1) }}
        union all
        {{ basket_pairs('changes', 'counted_products', -1) }}
    ) as weighted
    group by product_a, product_b
    having sum(orders_with_both) <> 0
),

final as (
    {%- if is_incremental() %}
    select
        difference.product_a,
        difference.product_b,
        coalesce(counted.orders_with_both, 0) + difference.orders_with_both as orders_with_both
    from difference
    left join {{ this }} as counted
        on difference.product_a = counted.product_a
        and difference.product_b = counted.product_b
    {%- else %}
    select product_a, product_b, orders_with_both
    from difference
    {%- endif %}
)

select * from final
