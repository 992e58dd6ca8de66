{#- One row per service ticket (inbound tickets and outbound follow-up calls) with
    the resolved customer it belongs to: the shop customer it references, else
    whoever owns the requester's e-mail. Tickets no identifier places keep a null key. -#}
with tickets as (
    select * from {{ ref('stg_service__tickets') }}
),

identifiers as (
    select * from {{ ref('int_identifiers_linked') }}
),

final as (
    select
        tickets.ticket_id,
        coalesce(by_customer_id.customer_key, by_email.customer_key) as customer_key,
        tickets.ticket_type,
        tickets.ticket_status,
        tickets.contact_channel,
        tickets.direction,
        tickets.call_outcome,
        tickets.created_at,
        tickets.updated_at,
        tickets.solved_at,
        tickets.is_complaint,
        tickets.is_follow_up_call,
        tickets.is_open,
        tickets.satisfaction_score,
        case when tickets.solved_at is not null
            then extract(epoch from tickets.solved_at - tickets.created_at) / 3600.0
        end as resolution_hours,
        tickets.requester_email,
        tickets.requester_name
    from tickets
    left join identifiers as by_customer_id
        on by_customer_id.identifier_type = 'shop_customer_id'
        and tickets.customer_id = by_customer_id.identifier_value
    left join identifiers as by_email
        on by_email.identifier_type = 'email'
        and tickets.requester_email = by_email.identifier_value
)

select * from final
