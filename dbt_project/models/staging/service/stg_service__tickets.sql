with source as (
    select * from {{ source('service', 'service_tickets') }}
    where {{ gated('service', source('service', 'service_tickets')) }}
),

renamed as (
    select
        record ->> 'id' as ticket_id,
        lower(record ->> 'type') as ticket_type,
        lower(record ->> 'status') as ticket_status,
        lower(record ->> 'channel') as contact_channel,
        lower(coalesce(nullif(record ->> 'direction', ''), 'inbound')) as direction,
        lower(nullif(record ->> 'outcome', '')) as call_outcome,
        cast(record ->> 'created_at' as timestamptz) as created_at,
        cast(coalesce(nullif(record ->> 'updated_at', ''), nullif(record ->> 'solved_at', ''), record ->> 'created_at')
            as timestamptz) as updated_at,
        cast(nullif(record ->> 'solved_at', '') as timestamptz) as solved_at,
        {{ normalize_email("record -> 'requester' ->> 'email'") }} as requester_email,
        nullif(trim(record -> 'requester' ->> 'name'), '') as requester_name,
        nullif({{ normalize_shop_customer_id("record ->> 'customer_ref'") }}, '') as customer_id,
        cast(nullif(record ->> 'satisfaction', '') as smallint) as satisfaction_score,
        _loaded_at,
        _source_file,
        _record_number
    from source
),

latest as (
    select
        *,
        row_number() over (
            partition by ticket_id order by updated_at desc, _loaded_at desc, _source_file desc, _record_number desc
        ) as version_rank
    from renamed
),

final as (
    select
        ticket_id,
        ticket_type,
        ticket_status,
        contact_channel,
        direction,
        call_outcome,
        created_at,
        updated_at,
        solved_at,
        requester_email,
        requester_name,
        customer_id,
        satisfaction_score,
        ticket_type = 'complaint' as is_complaint,
        ticket_type = 'follow_up_call' as is_follow_up_call,
        ticket_status <> 'solved' as is_open
    from latest
    where version_rank = 1
)

select * from final
