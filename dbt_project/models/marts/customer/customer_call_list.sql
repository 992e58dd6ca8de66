{#- index for the BI queries in docs/bi_queries.sql -#}
{{ config(post_hook=["{{ ensure_index(['call_date', 'call_rank']) }}"]) }}
{#- One row per customer to call on as_of_date: the daily follow-up call list.

    High-value customers (value or revenue tier in var('call_list_tiers')) who can be
    called (a phone), are not already in touch with service (no open ticket) and
    have not been contacted - no ticket and no follow-up call - for
    var('call_list_quiet_days') days, most valuable first (predicted lifetime value,
    then net revenue), at most var('call_list_size') of them. -#}
{%- set call_list_tiers -%}
    {%- for t in var('call_list_tiers') %}'{{ t }}'{{ ', ' if not loop.last }}{% endfor -%}
{%- endset %}
with customers as (
    select * from {{ ref('customer_360') }}
),

candidates as (
    select
        customer_key,
        full_name,
        phone,
        email,
        value_tier,
        revenue_tier,
        lifecycle_stage,
        predicted_clv,
        probability_alive,
        revenue,
        last_order_at,
        last_contact_at,
        follow_up_calls,
        has_marketing_consent,
        as_of_date,
        {{ as_of_date() }} - cast(last_contact_at at time zone 'UTC' as date) as days_since_contact
    from customers
    where phone is not null
        and open_tickets = 0
        and orders_completed > 0
        and (
            value_tier in ({{ call_list_tiers }})
            or revenue_tier in ({{ call_list_tiers }})
        )
        and (
            last_contact_at is null
            or last_contact_at < {{ as_of_date() }} - {{ var('call_list_quiet_days') }}
        )
),

ranked as (
    select
        *,
        row_number() over (
            order by predicted_clv desc nulls last, revenue desc, customer_key
        ) as call_rank
    from candidates
),

final as (
    select
        as_of_date as call_date,
        call_rank,
        customer_key,
        full_name,
        phone,
        email,
        value_tier,
        revenue_tier,
        lifecycle_stage,
        predicted_clv,
        probability_alive,
        revenue,
        last_order_at,
        last_contact_at,
        days_since_contact,
        follow_up_calls,
        has_marketing_consent,
        case
            when last_contact_at is null then 'high value, never contacted'
            else 'high value, not contacted for ' || days_since_contact || ' days'
        end
        || case when lifecycle_stage in ('at_risk', 'dormant') then ', ' || replace(lifecycle_stage, '_', ' ') else '' end
            as reason
    from ranked
    where call_rank <= {{ var('call_list_size') }}
)

select * from final
