{{ config(
    materialized='incremental',
    unique_key='visitor_id',
    incremental_strategy='delete+insert',
    pre_hook=["set local random_page_cost = 1.1", "{{ clear_for_rebuild('web') }}"],
    post_hook=["{{ ensure_index(['visitor_id']) }}", "{{ ensure_index(['loaded_at']) }}"],
) }}
{#- One row per web session: a visitor's events with no gap longer than
    var('session_gap_minutes') between consecutive events.

    Incremental: a build re-sessionizes only the visitors with events loaded since
    the last build, and of them only what a new event can change: a visitor's
    sessions that ended more than the gap before their earliest new event stay as
    they are (an event that late cannot join them), the events after them are
    sessionized again, numbered on from the sessions kept. delete+insert replaces
    the visitor's rows with the kept sessions and the new ones; other visitors'
    sessions are left as they are.

    A day touches few visitors, and each read of the history goes through an index:
    the events CTE is not materialized (it is read twice, and a materialized copy
    would be the whole event history), and the pre-hook prices random reads as for
    a warehouse in memory, so the touched visitors' sessions are looked up by
    visitor_id rather than all hashed. -#}
with events as not materialized (
    select * from {{ ref('stg_web__events') }}
),

{% if is_incremental() %}
touched_visitors as (
    select visitor_id, min(occurred_at) as earliest_new_at
    from events
    where {{ loaded_since_last_build('loaded_at', source_name='web') }}
    group by visitor_id
),

kept_sessions as (
    select built.*
    from {{ this }} as built
    inner join touched_visitors on built.visitor_id = touched_visitors.visitor_id
    where built.ended_at < touched_visitors.earliest_new_at - interval '{{ var("session_gap_minutes") }} minutes'
),

kept as (
    select visitor_id, max(ended_at) as kept_until, max(session_number) as sessions_kept
    from kept_sessions
    group by visitor_id
),

{#- materialized: each touched visitor's events are then read through the
    (visitor_id, occurred_at) index from where their kept sessions end; joined with
    the outer join to kept inlined, the planner reads the whole history -#}
touched as materialized (
    select
        touched_visitors.visitor_id,
        coalesce(kept.kept_until, '-infinity'::timestamptz) as kept_until,
        coalesce(kept.sessions_kept, 0) as sessions_before
    from touched_visitors
    left join kept on touched_visitors.visitor_id = kept.visitor_id
),

visitor_events as (
    select
        events.visitor_id,
        events.event_id,
        events.occurred_at,
        events.loaded_at,
        touched.sessions_before
    from touched
    inner join events
        on touched.visitor_id = events.visitor_id
        and events.occurred_at > touched.kept_until
),
{% else %}
visitor_events as (
    select visitor_id, event_id, occurred_at, loaded_at, 0 as sessions_before from events
),
{% endif %}

gaps as (
    select
        visitor_id,
        event_id,
        occurred_at,
        loaded_at,
        sessions_before,
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
        sessions_before + sum(starts_session) over (
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

{% if is_incremental() %}
select session_id, visitor_id, session_number, started_at, ended_at, event_count, loaded_at
from kept_sessions
union all
{% endif %}
select * from final
