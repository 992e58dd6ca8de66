{#- One row per resolved customer with its place in the activity, revenue and
    value pyramids as of var('as_of_date').

    activity: active (a purchase within var('active_window_days')), inactive (bought
              before), prospect (a known contact who never bought), suspect (an
              anonymous visitor);
    revenue:  var('revenue_tiers') by net revenue rank among customers with revenue;
    value:    var('value_tiers') by predicted lifetime value rank among customers
              with a prediction above zero. Customers outside a ranking are 'none'. -#}
with customers as (
    select * from {{ ref('int_customers_resolved') }}
),

orders as (
    select * from {{ ref('int_customer_orders_aggregated') }}
),

value as (
    select * from {{ ref('int_customer_value') }}
),

facts as (
    select
        customers.customer_key,
        customers.anchor_type,
        coalesce(orders.revenue, 0) as revenue,
        orders.last_order_date,
        coalesce(orders.orders_completed, 0) as orders_completed,
        coalesce(value.predicted_clv, 0) as predicted_clv
    from customers
    left join orders on customers.customer_key = orders.customer_key
    left join value on customers.customer_key = value.customer_key
),

ranked as (
    select
        *,
        case
            when revenue > 0
                then row_number() over (partition by revenue > 0 order by revenue desc, customer_key)
        end as revenue_rank,
        count(*) filter (where revenue > 0) over () as buyers,
        case
            when predicted_clv > 0
                then row_number() over (
                    partition by predicted_clv > 0 order by predicted_clv desc, customer_key
                )
        end as value_rank,
        count(*) filter (where predicted_clv > 0) over () as valued
    from facts
),

final as (
    select
        customer_key,
        {{ as_of_date() }} as as_of_date,
        case
            when orders_completed > 0
                and last_order_date > {{ as_of_date() }} - {{ var('active_window_days') }}
                then 'active'
            when orders_completed > 0 then 'inactive'
            when anchor_type in ('shop_customer_id', 'email') then 'prospect'
            else 'suspect'
        end as activity_tier,
        case
            when revenue_rank is null then 'none'
            else {{ tier_case('revenue_rank', 'buyers', 'revenue_tiers') }}
        end as revenue_tier,
        case
            when value_rank is null then 'none'
            else {{ tier_case('value_rank', 'valued', 'value_tiers') }}
        end as value_tier,
        revenue_rank,
        revenue,
        value_rank,
        predicted_clv
    from ranked
)

select * from final
