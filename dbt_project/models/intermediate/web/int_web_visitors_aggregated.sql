{{ config(
    materialized='incremental',
    unique_key='visitor_id',
    incremental_strategy='delete+insert',
    pre_hook="{{ clear_for_rebuild('web') }}",
    post_hook=["{{ ensure_index(['visitor_id']) }}", "{{ ensure_index(['loaded_at']) }}"],
) }}
{#- One row per web visitor id (a browser or device cookie): when it was first and
    last seen and how many events it sent. Incremental: a build folds the events
    loaded since the last build into the visitors they belong to. -#}
with events as (
    select * from {{ ref('stg_web__events') }}
    where {{ loaded_since_last_build('loaded_at', source_name='web') }}
),

batch as (
    select
        visitor_id,
        min(occurred_at) as first_seen_at,
        max(occurred_at) as last_seen_at,
        count(*) as event_count,
        max(loaded_at) as loaded_at
    from events
    group by visitor_id
),

{% if is_incremental() %}
previous as (
    select
        built.visitor_id,
        built.first_seen_at,
        built.last_seen_at,
        built.event_count,
        built.loaded_at
    from {{ this }} as built
    inner join batch on built.visitor_id = batch.visitor_id
),

combined as (
    select * from batch
    union all
    select * from previous
),
{% else %}
combined as (
    select * from batch
),
{% endif %}

final as (
    select
        visitor_id,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at,
        sum(event_count) as event_count,
        max(loaded_at) as loaded_at
    from combined
    group by visitor_id
)

select * from final
