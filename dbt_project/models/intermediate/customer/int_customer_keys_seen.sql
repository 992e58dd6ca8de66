{#- The identity mapping the last build that completed the customer-level models saw: one row per
    identifier (a digest of it, no value) with its customer key. Built after the incremental
    consumers of int_customers_affected (their refs above), so a failed build keeps the old one. #}
-- depends_on: {{ ref('int_customer_categories_aggregated') }}
-- depends_on: {{ ref('int_customer_orders_aggregated') }}
-- depends_on: {{ ref('int_customer_web_aggregated') }}
select
    md5(identifier_id) as identifier_hash,
    customer_key
from {{ ref('int_identifiers_linked') }}
