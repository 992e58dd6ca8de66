{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook="{{ clear_affected_customers(['identity', 'web']) }}",
    post_hook=["{{ ensure_index(['customer_key']) }}"],
) }}
{#- One row per customer with web sessions, over all of their visitor ids.

    Incremental on the customers a build touched (int_customers_affected, reasons identity and
    web: a visitor's sessions change only with events loaded for it, or its customer with the
    identity mapping; macros/affected_customers.sql): their rows are deleted and computed again
    from their visitors' sessions, read through the visitor_id index of the sessions. -#}
-- depends_on: {{ ref('int_customers_affected') }}
with sessions as (
    select * from {{ ref('int_web_events_sessionized') }}
),

identifiers as (
    select * from {{ ref('int_identifiers_linked') }}
    where identifier_type = 'visitor_id'
        and {{ affected_filter('customer_key', ['identity', 'web']) }}
),

final as (
    select
        identifiers.customer_key,
        count(*) as web_sessions,
        sum(sessions.event_count) as web_events,
        min(sessions.started_at) as first_web_visit_at,
        max(sessions.ended_at) as last_web_visit_at
    from sessions
    inner join identifiers on sessions.visitor_id = identifiers.identifier_value
    group by identifiers.customer_key
)

select * from final
