{{ config(
    materialized='incremental',
    unique_key='visitor_id',
    incremental_strategy='delete+insert',
    post_hook=["{{ ensure_index(['visitor_id']) }}", "{{ ensure_index(['loaded_at']) }}"],
) }}
{#- One row per web session: a visitor's events with no gap longer than
    var('session_gap_minutes') between consecutive events.

    Incremental: a build re-sessionizes only the visitors with events loaded since
    the last build (a late event can join or split their earlier sessions), reading
    their events through the (visitor_id, occurred_at) index; other visitors'
    sessions are left as they are. -#}
with events as (
    select * from {{ ref('stg_web__events') }}
),

{% if is_incremental() %}
touched_visitors as (
    select distinct visitor_id
    from events
    where {{ loaded_since_last_build('loaded_at') }}
),

visitor_events as (
    select
        events.visitor_id,
        events.event_id,
        events.occurred_at,
        events.loaded_at
    from events
    inner join touched_visitors on events.visitor_id = touched_visitors.visitor_id
),
{% else %}
visitor_events as (
    select visitor_id, event_id, occurred_at, loaded_at from events
),
{% endif %}

gaps as (
    select
        visitor_id,
        event_id,
        occurred_at,
        loaded_at,
        case
            when lag(occurred_at) over visitor_timeline is null then 1
            when occurred_at - lag(occurred_at) over visitor_timeline
                > interval '{{ var("session_gap_minutes") }} minutes' then 1
            else 0
        end as starts_session
    from visitor_events
    window visitor_timeline as (partition by visitor_id order by occurred_at, event_id)
),

numbered as (
    select
        visitor_id,
        occurred_at,
        loaded_at,
        sum(starts_session) over (
            partition by visitor_id order by occurred_at, event_id rows unbounded preceding
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
        count(*) as event_count,
        max(loaded_at) as loaded_at
    from numbered
    group by visitor_id, session_number
)

select * from final
