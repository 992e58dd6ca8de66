{#- Purchase baskets, and the product pairs bought together counted day by day
    (int_product_pairs_counted, which product_affinity reads).

    A basket is a purchase (an order kept wholly or in part) as the sorted array of the distinct
    products on its lines. The counts are kept up to date by difference: a build stages the
    orders loaded since the last one (new, changed, or erased since) with their basket now and
    their basket as last counted, and adds the pairs of the first, less those of the second. The
    baskets as counted are kept beside the counts (`<model>__baskets`, order_id, products,
    loaded_at), written by the counting model's post-hook in the transaction that writes the
    counts: the two cannot part, so a build that fails leaves both as they were and the next
    build counts the difference again from the same start. Staging the same order twice adds
    nothing (its basket now equals its basket as counted). A day that replaced sales files
    (staging rebuilt: it keeps no trace of what it lost), a first build and a full refresh count
    every basket afresh. -#}

{#- The purchase baskets of the orders `orders_where` selects (a predicate on `orders`), with
    the newest load of the order or its lines. Every order has a known shop customer (the
    relationships test of stg_sales__orders stops the build otherwise), so these are the
    purchases of int_orders_attributed. -#}
{% macro purchase_baskets(orders_where='true') -%}
    select
        order_lines.order_id,
        array_agg(distinct order_lines.product_id order by order_lines.product_id) as products,
        greatest(max(orders.loaded_at), max(order_lines.loaded_at)) as loaded_at
    from (select * from {{ ref('stg_sales__order_lines') }}) as order_lines
    inner join (select * from {{ ref('stg_sales__orders') }}) as orders on order_lines.order_id = orders.order_id
    where orders.is_purchase
        and order_lines.product_id is not null
        and ({{ orders_where }})
    group by order_lines.order_id
{%- endmacro %}

{#- Each basket's product pairs (a, b) with a <= b, weighted by `weight`: a = b is the basket
    holding the product, so the same rows count products and pairs. -#}
{% macro basket_pairs(baskets, products_column, weight) -%}
    select
        first_product.product_id as product_a,
        second_product.product_id as product_b,
        {{ weight }} as orders_with_both
    from {{ baskets }} as baskets
    cross join lateral unnest(baskets.{{ products_column }}) with ordinality as first_product (product_id, position)
    cross join lateral unnest(baskets.{{ products_column }}) with ordinality as second_product (product_id, position)
    where first_product.position <= second_product.position
{%- endmacro %}

{#- The table of baskets as counted, beside the counting model (it may not exist yet). -#}
{% macro counted_baskets_table() -%}
    {{ return(this.incorporate(path={'identifier': this.identifier ~ '__baskets'})) }}
{%- endmacro %}

{#- 'rebuild' (count every basket afresh) or 'delta' (count the difference), see the top. -#}
{% macro basket_count_mode() -%}
    {%- set table = counted_baskets_table() -%}
    {%- set counted = adapter.get_relation(database=table.database, schema=table.schema, identifier=table.identifier) -%}
    {%- if not is_incremental() or counted is none -%}
        {{ return('rebuild') }}
    {%- endif -%}
    {{ return(build_mode('sales', built=counted)) }}
{%- endmacro %}

{#- Pre-hook of the counting model, in its transaction: stage the baskets to count into the
    temporary table crm360_changed_baskets (order_id, products now or null, products as counted
    or null, loaded_at). On a rebuild, every basket, with the counts and the baskets as counted
    emptied. -#}
{% macro stage_changed_baskets() -%}
    {%- set mode = basket_count_mode() -%}
    {%- set counted = counted_baskets_table() -%}
    create table if not exists {{ counted }} (
        order_id text primary key, products text[] not null, loaded_at timestamptz not null);
    {#- its newest loaded_at is the watermark, read twice a build: an index lookup, not a scan #}
    create index if not exists "{{ counted.identifier }}__loaded_at_idx" on {{ counted }} (loaded_at);
    drop table if exists pg_temp.crm360_changed_baskets;
    {% if mode == 'rebuild' -%}
    {%- if is_incremental() %}
    delete from {{ this }};
    {%- endif %}
    truncate {{ counted }};
    create temporary table crm360_changed_baskets as
    select order_id, products, cast(null as text[]) as counted_products, loaded_at
    from ({{ purchase_baskets() }}) as baskets;
    {%- else -%}
    {#- the watermark as a literal: a range the planner can see is small -#}
    {%- set watermark = run_query("select coalesce(max(loaded_at), '-infinity')::text from " ~ counted | string)
                        .columns[0].values()[0] if execute else '-infinity' %}
    create temporary table crm360_changed_baskets as
    with changed_orders as (
        {{ orders_loaded_since(watermark, watermark) }}
        union
        -- erased since: their orders are gone from staging
        select counted.order_id
        from {{ counted }} as counted
        where exists (select 1 from audit.erasure_requests as requests
                      where requests.applied_at > '{{ watermark }}'::timestamptz)
            and not exists (select 1 from {{ ref('stg_sales__orders') }}
                            where order_id = counted.order_id)
    ),

    baskets_now as (
        {{ purchase_baskets('orders.order_id in (select order_id from changed_orders)') }}
    )

    select
        changed_orders.order_id,
        baskets_now.products,
        counted.products as counted_products,
        baskets_now.loaded_at
    from changed_orders
    left join baskets_now on changed_orders.order_id = baskets_now.order_id
    left join {{ counted }} as counted on changed_orders.order_id = counted.order_id;
    {%- endif %}
    analyze pg_temp.crm360_changed_baskets
{%- endmacro %}

{#- Post-hook of the counting model, in its transaction: the staged baskets become the baskets
    as counted; pairs counted down to none are deleted. -#}
{% macro record_counted_baskets() -%}
    {%- set counted = counted_baskets_table() -%}
    delete from {{ counted }} where order_id in (select order_id from pg_temp.crm360_changed_baskets);
    insert into {{ counted }} (order_id, products, loaded_at)
    select order_id, products, loaded_at from pg_temp.crm360_changed_baskets where products is not null;
    delete from {{ this }} where orders_with_both = 0;
    drop table pg_temp.crm360_changed_baskets
{%- endmacro %}
