{{ config(
    materialized='incremental',
    pre_hook="{{ clear_for_rebuild('web') }}",
    post_hook=["{{ ensure_index(['event_id']) }}", "{{ ensure_index(['visitor_id', 'occurred_at']) }}",
               "{{ ensure_index(['loaded_at']) }}"],
) }}
{#- One row per web event. The event stream is the largest source, so this model is
    a table built incrementally: each build reads only the raw rows loaded since the
    last one. The same event can arrive twice (retries, late files); the first copy
    loaded is kept and later copies are dropped. A day that replaced a file loaded before
    rebuilds it from all events. Only rows of gated loads are read. -#}
with source as (
    select * from {{ source('web', 'web_events') }}
    where {{ loaded_since_last_build('_loaded_at', source_name='web') }}
        and {{ gated('web', source('web', 'web_events')) }}
),

renamed as (
    select
        record ->> 'event_id' as event_id,
        {{ normalize_visitor_id("record ->> 'visitor_id'") }} as visitor_id,
        lower(record ->> 'event_type') as event_type,
        record ->> 'page' as page_path,
        cast(record ->> 'occurred_at' as timestamptz) as occurred_at,
        {{ normalize_email("record ->> 'email'") }} as email,
        nullif({{ normalize_shop_customer_id("record ->> 'customer_id'") }}, '') as customer_id,
        _loaded_at,
        _source_file,
        _record_number
    from source
),

deduplicated as (
    select
        *,
        row_number() over (
            partition by event_id order by _loaded_at, _source_file, _record_number
        ) as copy_rank
    from renamed
),

final as (
    select
        deduplicated.event_id,
        deduplicated.visitor_id,
        deduplicated.event_type,
        deduplicated.page_path,
        deduplicated.occurred_at,
        deduplicated.email,
        deduplicated.customer_id,
        deduplicated._loaded_at as loaded_at
    from deduplicated
    where deduplicated.copy_rank = 1
    {%- if is_incremental() %}
        and not exists (select 1 from {{ this }} as built where built.event_id = deduplicated.event_id)
    {%- endif %}
)

select * from final
