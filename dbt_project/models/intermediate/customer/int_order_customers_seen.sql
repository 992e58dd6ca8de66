{{ config(
    materialized='incremental',
    unique_key='order_id',
    incremental_strategy='delete+insert',
    pre_hook="{{ clear_for_rebuild('sales') }}",
    post_hook=["{{ ensure_index(['order_id']) }}", "{{ ensure_index(['loaded_at']) }}"],
) }}
{#- Each order's shop customer as the last build that completed the customer-level models saw it,
    so int_customers_affected finds the customer an order left. Built after the incremental
    consumers of int_customers_affected (their refs above), from the orders loaded since. #}
-- depends_on: {{ ref('int_customer_categories_aggregated') }}
-- depends_on: {{ ref('int_customer_orders_aggregated') }}
-- depends_on: {{ ref('int_customer_web_aggregated') }}
-- depends_on: {{ ref('int_customers_resolved') }}
select
    order_id,
    customer_id as shop_customer_id,
    loaded_at
from {{ ref('stg_sales__orders') }}
where {{ loaded_since_last_build('loaded_at', source_name='sales') }}
