{#- One row per customer with service tickets or follow-up calls. -#}
with tickets as (
    select * from {{ ref('int_tickets_attributed') }}
    where customer_key is not null
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
        avg(resolution_hours) filter (where not is_follow_up_call) as avg_resolution_hours,
        percentile_cont(0.5) within group (order by resolution_hours)
            filter (where not is_follow_up_call) as median_resolution_hours,
        min(created_at) as first_ticket_at,
        max(created_at) filter (where not is_follow_up_call) as last_ticket_at,
        max(created_at) as last_contact_at,
        max(updated_at) as service_updated_at,
        (array_agg(requester_name order by created_at desc) filter (where requester_name is not null))[1]
            as latest_requester_name
    from tickets
    group by customer_key
)

select * from final
