with source as (
    select * from {{ source('web', 'web_events') }}
),

renamed as (
    select
        record ->> 'event_id' as event_id,
        record ->> 'visitor_id' as visitor_id,
        lower(record ->> 'event_type') as event_type,
        record ->> 'page' as page_path,
        cast(record ->> 'occurred_at' as timestamptz) as occurred_at,
        {{ normalize_email("record ->> 'email'") }} as email,
        nullif(trim(record ->> 'customer_id'), '') as customer_id,
        _loaded_at,
        _source_file,
        _record_number
    from source
),

deduplicated as (
    -- the same event can arrive twice (retries, late files); keep the first copy
    select
        *,
        row_number() over (
            partition by event_id order by _loaded_at, _source_file, _record_number
        ) as copy_rank
    from renamed
),

final as (
    select
        event_id,
        visitor_id,
        event_type,
        page_path,
        occurred_at,
        email,
        customer_id
    from deduplicated
    where copy_rank = 1
)

select * from final
