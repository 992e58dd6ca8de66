{#- The product catalogue as the last build that completed the customer-level models saw it: what
    int_customers_affected compares today's catalogue with, to find the products whose category or
    list price changed (their buyers are recomputed, not everyone). Built after the incremental
    consumers of int_customers_affected (their refs above), so a failed build keeps the old one. #}
-- depends_on: {{ ref('int_customer_categories_aggregated') }}
-- depends_on: {{ ref('int_customer_orders_aggregated') }}
-- depends_on: {{ ref('int_customer_web_aggregated') }}
-- depends_on: {{ ref('int_customers_resolved') }}
select
    product_id,
    category,
    list_price
from {{ ref('stg_sales__products') }}
