{#- One row per resolved customer: profile, identifiers, sales, service and web
    facts, and pyramid tiers. -#}
with customers as (
    select * from {{ ref('int_customers_resolved') }}
),

shop_customers as (
    select * from {{ ref('stg_sales__customers') }}
),

orders as (
    select * from {{ ref('int_customer_orders_aggregated') }}
),

tickets as (
    select * from {{ ref('int_customer_tickets_aggregated') }}
),

web as (
    select * from {{ ref('int_customer_web_aggregated') }}
),

tiers as (
    select * from {{ ref('int_customers_tiered') }}
),

final as (
    select
        customers.customer_key,
        case customers.anchor_type
            when 'shop_customer_id' then 'shop_customer'
            when 'email' then 'known_contact'
            else 'anonymous_visitor'
        end as customer_type,
        customers.shop_customer_id,
        customers.shop_record_count,
        customers.primary_email as email,
        coalesce(
            nullif(concat_ws(' ', shop_customers.first_name, shop_customers.last_name), ''),
            tickets.latest_requester_name
        ) as full_name,
        shop_customers.phone_e164 as phone,
        shop_customers.city,
        shop_customers.region,
        shop_customers.country_code,
        shop_customers.gender,
        shop_customers.birth_year,
        shop_customers.income_band,
        shop_customers.occupation,
        shop_customers.acquisition_channel,
        coalesce(shop_customers.has_marketing_consent, false) as has_marketing_consent,
        shop_customers.created_at as registered_at,
        customers.identifiers,
        customers.identifier_count,
        customers.visitor_count,
        coalesce(orders.orders_placed, 0) as orders_placed,
        coalesce(orders.orders_completed, 0) as orders_completed,
        coalesce(orders.orders_returned, 0) as orders_returned,
        coalesce(orders.revenue_eur, 0) as revenue_eur,
        coalesce(orders.refunded_eur, 0) as refunded_eur,
        orders.first_order_at,
        orders.last_order_at,
        coalesce(tickets.tickets, 0) as tickets,
        coalesce(tickets.complaints, 0) as complaints,
        coalesce(tickets.open_tickets, 0) as open_tickets,
        coalesce(tickets.follow_up_calls, 0) as follow_up_calls,
        tickets.last_follow_up_call_at,
        cast(tickets.avg_satisfaction_score as numeric(4, 2)) as avg_satisfaction_score,
        cast(tickets.avg_resolution_hours as numeric(10, 1)) as avg_resolution_hours,
        tickets.last_ticket_at,
        coalesce(web.web_sessions, 0) as web_sessions,
        web.last_web_visit_at,
        tiers.activity_tier,
        tiers.revenue_tier,
        tiers.as_of_date
    from customers
    left join shop_customers on customers.shop_customer_id = shop_customers.customer_id
    left join orders on customers.customer_key = orders.customer_key
    left join tickets on customers.customer_key = tickets.customer_key
    left join web on customers.customer_key = web.customer_key
    inner join tiers on customers.customer_key = tiers.customer_key
)

select * from final
