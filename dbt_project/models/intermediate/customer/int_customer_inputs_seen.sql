{#- What the last build that completed the customer-level models read, one row per input: how far
    it read the incremental staging models (their newest loaded_at; null when empty), and digests
    of the exchange rates and the rule vars it used (the catalogue it saw is int_products_seen). Built after the incremental consumers of
    int_customers_affected. #}
-- depends_on: {{ ref('int_customer_categories_aggregated') }}
-- depends_on: {{ ref('int_customer_orders_aggregated') }}
-- depends_on: {{ ref('int_customer_web_aggregated') }}
-- depends_on: {{ ref('int_customers_resolved') }}
select 'orders' as input, max(loaded_at) as loaded_at, cast(null as text) as digest from {{ ref('stg_sales__orders') }}
union all
select 'order_lines', max(loaded_at), null from {{ ref('stg_sales__order_lines') }}
union all
select 'web_events', max(loaded_at), null from {{ ref('stg_web__events') }}
union all
select 'rates', null, {{ rates_digest() }} from {{ ref('stg_sales__currency_rates') }}
union all
select 'rules', null, {{ customer_rules_digest() }}
