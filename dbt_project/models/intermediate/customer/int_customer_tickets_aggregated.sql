{#- One row per customer with service tickets. A ticket belongs to the shop
    customer it references, else to whoever owns the requester's e-mail. -#}
with tickets as (
    select * from {{ ref('stg_service__tickets') }}
),

identifiers as (
    select * from {{ ref('int_identifiers_linked') }}
),

attributed as (
    select
        coalesce(by_customer_id.customer_key, by_email.customer_key) as customer_key,
        tickets.ticket_id,
        tickets.created_at,
        tickets.solved_at,
        tickets.is_complaint,
        tickets.is_follow_up_call,
        tickets.is_open,
        tickets.satisfaction_score,
        tickets.requester_name
    from tickets
    left join identifiers as by_customer_id
        on by_customer_id.identifier_type = 'shop_customer_id'
        and tickets.customer_id = by_customer_id.identifier_value
    left join identifiers as by_email
        on by_email.identifier_type = 'email'
        and tickets.requester_email = by_email.identifier_value
),

final as (
    select
        customer_key,
        count(*) filter (where not is_follow_up_call) as tickets,
        count(*) filter (where is_complaint) as complaints,
        count(*) filter (where is_open and not is_follow_up_call) as open_tickets,
        count(*) filter (where is_follow_up_call) as follow_up_calls,
        max(created_at) filter (where is_follow_up_call) as last_follow_up_call_at,
        avg(satisfaction_score) as avg_satisfaction_score,
        count(satisfaction_score) as satisfaction_responses,
        avg(extract(epoch from solved_at - created_at) / 3600.0)
            filter (where solved_at is not null) as avg_resolution_hours,
        max(created_at) filter (where not is_follow_up_call) as last_ticket_at,
        (array_agg(requester_name order by created_at desc) filter (where requester_name is not null))[1]
            as latest_requester_name
    from attributed
    where customer_key is not null
    group by customer_key
)

select * from final
