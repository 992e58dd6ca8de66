{#- The identity mapping the last build that completed the customer-level models saw: one row per
    identifier (a digest of it, no value) with its customer key, when it was first seen, and for an
    anchor shop record a digest of its e-mail and phone (int_customers_resolved's primary contacts).
    Built after the incremental consumers of int_customers_affected (their refs above), so a failed
    build keeps the old one. #}
-- depends_on: {{ ref('int_customer_categories_aggregated') }}
-- depends_on: {{ ref('int_customer_orders_aggregated') }}
-- depends_on: {{ ref('int_customer_web_aggregated') }}
-- depends_on: {{ ref('int_customers_resolved') }}
with linked as (
    select * from {{ ref('int_identifiers_linked') }}
),

shop_customers as (
    select * from {{ ref('stg_sales__customers') }}
)

select
    {{ identifier_state_columns('linked', 'shop_customers') }}
from linked
left join shop_customers on {{ anchor_shop_record('linked', 'shop_customers') }}
