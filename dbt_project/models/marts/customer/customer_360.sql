{#- indexes for the BI queries in docs/bi_queries.sql -#}
{{ config(post_hook=["{{ ensure_index(['customer_key']) }}",
           "{{ ensure_index(['email']) }}",
           "{{ ensure_index(['revenue_tier', 'lifecycle_stage']) }}",
           "{{ ensure_index(['value_tier', 'lifecycle_stage']) }}"]) }}
{#- One row per resolved customer: identifiers, profile and its freshness, sales,
    value, service and web facts, lifecycle stage, pyramid tiers and needs type. -#}
with customers as (
    select * from {{ ref('int_customers_resolved') }}
),

shop_customers as (
    select * from {{ ref('stg_sales__customers') }}
),

orders as (
    select * from {{ ref('int_customer_orders_aggregated') }}
),

categories as (
    select * from {{ ref('int_customer_categories_aggregated') }}
),

rfm as (
    select * from {{ ref('int_customer_rfm') }}
),

value as (
    select * from {{ ref('int_customer_value') }}
),

tickets as (
    select * from {{ ref('int_customer_tickets_aggregated') }}
),

web as (
    select * from {{ ref('int_customer_web_aggregated') }}
),

lifecycle as (
    select * from {{ ref('int_customer_lifecycle') }}
),

tiers as (
    select * from {{ ref('int_customers_tiered') }}
),

needs as (
    select * from {{ ref('int_customer_needs') }}
),

joined as (
    select
        customers.customer_key,
        case customers.anchor_type
            when 'shop_customer_id' then 'shop_customer'
            when 'email' then 'known_contact'
            else 'anonymous_visitor'
        end as customer_type,
        customers.shop_customer_id,
        customers.shop_customer_ids,
        customers.shop_record_count,
        customers.primary_email as email,
        customers.primary_phone as phone,
        customers.emails,
        customers.phones,
        customers.visitor_ids,
        customers.identifiers,
        customers.identifier_count,
        customers.visitor_count,
        coalesce(
            nullif(concat_ws(' ', shop_customers.first_name, shop_customers.last_name), ''),
            tickets.latest_requester_name
        ) as full_name,
        shop_customers.city,
        shop_customers.region,
        shop_customers.country_code,
        shop_customers.gender,
        shop_customers.birth_year,
        case
            when shop_customers.birth_year is null then null
            when extract(year from {{ as_of_date() }}) - shop_customers.birth_year < 25 then 'under_25'
            when extract(year from {{ as_of_date() }}) - shop_customers.birth_year < 35 then '25_34'
            when extract(year from {{ as_of_date() }}) - shop_customers.birth_year < 45 then '35_44'
            when extract(year from {{ as_of_date() }}) - shop_customers.birth_year < 55 then '45_54'
            when extract(year from {{ as_of_date() }}) - shop_customers.birth_year < 65 then '55_64'
            else '65_plus'
        end as age_band,
        shop_customers.income_band,
        shop_customers.occupation,
        shop_customers.acquisition_channel,
        coalesce(shop_customers.has_marketing_consent, false) as has_marketing_consent,
        shop_customers.created_at as registered_at,
        customers.first_seen_at,
        shop_customers.updated_at as profile_updated_at,
        orders.sales_updated_at,
        tickets.service_updated_at,
        web.last_web_visit_at as web_updated_at,
        coalesce(orders.orders_placed, 0) as orders_placed,
        coalesce(orders.orders_completed, 0) as orders_completed,
        coalesce(orders.orders_returned, 0) as orders_returned,
        coalesce(orders.orders_cancelled, 0) as orders_cancelled,
        cast(coalesce(orders.revenue, 0) as numeric(14, 2)) as revenue,
        cast(coalesce(orders.refunded, 0) as numeric(14, 2)) as refunded,
        cast(orders.average_order_value as numeric(12, 2)) as average_order_value,
        orders.first_order_at,
        orders.last_order_at,
        categories.favourite_category,
        cast(categories.favourite_category_share as numeric(5, 4)) as favourite_category_share,
        rfm.recency_days as rfm_recency_days,
        rfm.recency_score as rfm_recency_score,
        rfm.frequency_score as rfm_frequency_score,
        rfm.monetary_score as rfm_monetary_score,
        rfm.rfm_cell,
        rfm.rfm_segment,
        cast(value.predicted_purchases as numeric(10, 3)) as predicted_purchases,
        cast(value.probability_alive as numeric(6, 5)) as probability_alive,
        cast(value.expected_order_value as numeric(12, 2)) as expected_order_value,
        cast(value.predicted_clv as numeric(14, 2)) as predicted_clv,
        coalesce(tickets.tickets, 0) as tickets,
        coalesce(tickets.complaints, 0) as complaints,
        coalesce(tickets.open_tickets, 0) as open_tickets,
        cast(tickets.avg_resolution_hours as numeric(10, 1)) as avg_resolution_hours,
        cast(tickets.median_resolution_hours as numeric(10, 1)) as median_resolution_hours,
        cast(tickets.avg_satisfaction_score as numeric(4, 2)) as avg_satisfaction_score,
        coalesce(tickets.satisfaction_responses, 0) as satisfaction_responses,
        tickets.last_ticket_at,
        tickets.last_contact_at,
        coalesce(tickets.follow_up_calls, 0) as follow_up_calls,
        tickets.last_follow_up_call_at,
        coalesce(web.web_sessions, 0) as web_sessions,
        cast(coalesce(web.web_events, 0) as bigint) as web_events,
        web.first_web_visit_at,
        web.last_web_visit_at,
        lifecycle.lifecycle_stage,
        tiers.activity_tier,
        tiers.revenue_tier,
        tiers.value_tier,
        needs.needs_type,
        tiers.as_of_date
    from customers
    left join shop_customers on customers.shop_customer_id = shop_customers.customer_id
    left join orders on customers.customer_key = orders.customer_key
    left join categories on customers.customer_key = categories.customer_key
    left join rfm on customers.customer_key = rfm.customer_key
    left join value on customers.customer_key = value.customer_key
    left join tickets on customers.customer_key = tickets.customer_key
    left join web on customers.customer_key = web.customer_key
    left join needs on customers.customer_key = needs.customer_key
    inner join lifecycle on customers.customer_key = lifecycle.customer_key
    inner join tiers on customers.customer_key = tiers.customer_key
),

final as (
    select
        *,
        greatest(profile_updated_at, sales_updated_at, service_updated_at, web_updated_at, first_seen_at)
            as last_updated_at,
        greatest(profile_updated_at, sales_updated_at, service_updated_at, web_updated_at, first_seen_at)
            < {{ as_of_date() }} - {{ var('profile_stale_after_days') }} as is_stale
    from joined
)

select * from final
