{#- A select of each customer's first web visit (customer_key, first_web_visit_at): the earliest
    first event of their visitor ids. The same instant as int_customer_web_aggregated's
    first_web_visit_at (every event of a visitor is in one of its sessions), read from the
    visitors (int_web_visitors_aggregated, built in the first stage) so that the tier history
    (int_tier_snapshots_dated, int_customers_first_seen), the longest chain of models in the
    second stage, does not start after the sessions, their tests and the web aggregates. The refs
    are read through subqueries: an aliased ref breaks `dbt run --empty`. -#}
{% macro customer_first_web_visits() -%}
    select linked.customer_key, min(visitors.first_seen_at) as first_web_visit_at
    from (select visitor_id, first_seen_at from {{ ref('int_web_visitors_aggregated') }}) as visitors
    inner join (
        select identifier_value, customer_key from {{ ref('int_identifiers_linked') }}
        where identifier_type = 'visitor_id'
    ) as linked on visitors.visitor_id = linked.identifier_value
    group by linked.customer_key
{%- endmacro %}
