{#- One row per web session: a visitor's events with no gap longer than
    var('session_gap_minutes') between consecutive events. -#}
with events as (
    select * from {{ ref('stg_web__events') }}
),

gaps as (
    select
        visitor_id,
        occurred_at,
        case
            when lag(occurred_at) over (partition by visitor_id order by occurred_at, event_id) is null
                then 1
            when occurred_at - lag(occurred_at) over (partition by visitor_id order by occurred_at, event_id)
                > interval '{{ var("session_gap_minutes") }} minutes'
                then 1
            else 0
        end as starts_session
    from events
),

numbered as (
    select
        visitor_id,
        occurred_at,
        sum(starts_session) over (
            partition by visitor_id order by occurred_at rows unbounded preceding
        ) as session_number
    from gaps
),

final as (
    select
        md5(visitor_id || ':' || session_number) as session_id,
        visitor_id,
        session_number,
        min(occurred_at) as started_at,
        max(occurred_at) as ended_at,
        count(*) as event_count
    from numbered
    group by visitor_id, session_number
)

select * from final
