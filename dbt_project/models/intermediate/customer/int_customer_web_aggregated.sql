{#- One row per customer with web sessions, over all of their visitor ids. -#}
with sessions as (
    select * from {{ ref('int_web_events_sessionized') }}
),

identifiers as (
    select * from {{ ref('int_identifiers_linked') }}
    where identifier_type = 'visitor_id'
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
