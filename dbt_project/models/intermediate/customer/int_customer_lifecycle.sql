{#- One row per resolved customer with its lifecycle stage as of var('as_of_date').

    Windows count whole days before the as-of date and are exclusive, as in the
    activity pyramid (a purchase 89 days ago is within a 90-day window, one 90 days
    ago is not).
    Buyers (a completed or partly returned order):
      won_back      bought within active_window_days after a gap longer than
                    lifecycle_churned_after_days since the purchase before;
      new_customer  first purchase within lifecycle_new_customer_days;
      active        last purchase within active_window_days;
      at_risk       last purchase within lifecycle_dormant_after_days;
      dormant       last purchase within lifecycle_churned_after_days;
      churned       last purchase longer ago.
    Known contacts who never bought (a shop record or an e-mail):
      new_prospect      first seen within lifecycle_new_prospect_days;
      dormant_prospect  seen (web visit, service contact) within lifecycle_lost_prospect_after_days;
      lost_prospect     not seen for longer.
    Anonymous visitors: suspect. -#}
with customers as (
    select * from {{ ref('int_customers_resolved') }}
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

facts as (
    select
        customers.customer_key,
        customers.anchor_type,
        cast(customers.first_seen_at at time zone 'UTC' as date) as first_seen_date,
        coalesce(orders.orders_completed, 0) as orders_completed,
        orders.first_order_date,
        orders.last_order_date,
        orders.previous_order_date,
        cast(greatest(tickets.last_contact_at, web.last_web_visit_at) at time zone 'UTC' as date) as last_seen_date
    from customers
    left join orders on customers.customer_key = orders.customer_key
    left join tickets on customers.customer_key = tickets.customer_key
    left join web on customers.customer_key = web.customer_key
),

staged as (
    select
        customer_key,
        case
            when orders_completed > 0 then
                case
                    when {{ as_of_date() }} - last_order_date < {{ var('active_window_days') }}
                        and last_order_date - previous_order_date > {{ var('lifecycle_churned_after_days') }}
                        then 'won_back'
                    when {{ as_of_date() }} - first_order_date < {{ var('lifecycle_new_customer_days') }}
                        then 'new_customer'
                    when {{ as_of_date() }} - last_order_date < {{ var('active_window_days') }}
                        then 'active'
                    when {{ as_of_date() }} - last_order_date < {{ var('lifecycle_dormant_after_days') }}
                        then 'at_risk'
                    when {{ as_of_date() }} - last_order_date < {{ var('lifecycle_churned_after_days') }}
                        then 'dormant'
                    else 'churned'
                end
            when anchor_type in ('shop_customer_id', 'email') then
                case
                    when {{ as_of_date() }} - first_seen_date < {{ var('lifecycle_new_prospect_days') }}
                        then 'new_prospect'
                    when {{ as_of_date() }} - greatest(first_seen_date, last_seen_date)
                        < {{ var('lifecycle_lost_prospect_after_days') }}
                        then 'dormant_prospect'
                    else 'lost_prospect'
                end
            else 'suspect'
        end as lifecycle_stage,
        {{ as_of_date() }} - last_order_date as days_since_last_order,
        last_order_date - previous_order_date as days_between_last_orders
    from facts
),

final as (
    select
        customer_key,
        lifecycle_stage,
        days_since_last_order,
        days_between_last_orders
    from staged
)

select * from final
